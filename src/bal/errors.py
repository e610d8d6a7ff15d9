"""The exception types bal raises for bad input.

The command line turns a :class:`BalError` into ``bal: error: <message>`` and exit
status 2, so every message must name the file, flag or value that is wrong.

Library code names *parameters* (``percentages``, ``beta``), never command-line
flags: a :class:`ParameterError` keeps the parameter's name apart from the message,
so that the command line can say ``--per_samples_list`` where Python says
``percentages`` (see :mod:`bal.cli.flags`).
"""


class BalError(Exception):
    """Bad input or an impossible request, with a message a user can act on."""


class DataError(BalError):
    """A dataset folder or image file is missing, corrupt or inconsistent."""


class ParameterError(BalError, ValueError):
    """A parameter of a public function has a value it cannot take.

    ``template`` holds ``{name}`` where the parameter's name goes, e.g.
    ``ParameterError("beta", "{name} must be > 0, got -1")``; :meth:`named` renders it
    under another name (a flag).
    """

    def __init__(self, param: str, template: str):
        self.param = param
        self.template = template
        super().__init__(template.format(name=param))

    def named(self, name: str) -> str:
        return self.template.format(name=name)
