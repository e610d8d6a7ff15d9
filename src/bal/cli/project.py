"""The labelling-project commands: ``bal project init|scan``, ``query``, ``export``, ``import``, ``fit``, ``status``.

:func:`add_project_commands` adds them to bal's sub-command parser and returns their
handlers; each handler takes the parsed arguments, prints, and returns the exit status.
Bad input raises :class:`~bal.errors.BalError` (bal's ``main`` turns it into exit 2).
The work itself is in :mod:`bal.project`: :mod:`~bal.project.scan`,
:mod:`~bal.project.labelling`, :mod:`~bal.project.formats`, :mod:`~bal.project.status`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from bal.cli.flags import add, fraction, image_side, positive_float, positive_int, seed

Handler = Callable[[argparse.Namespace], int]


def _class_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",")]


def _run_flags(p) -> None:
    add(p, "--device", default="auto", help="auto (CUDA when present), cpu, cuda, ... (default: %(default)s)")
    add(p, "--no-progress", action="store_true", help="no progress bars")


#: The commands added here; only query and fit need torch to build their flags.
PROJECT_COMMANDS = ("project", "query", "export", "import", "undo", "fit", "predict", "status")


def add_project_commands(subparsers, only: str | None = None) -> dict[str, Handler]:
    """Add the project commands to bal's ``add_subparsers()`` object; returns {command: handler}.

    With ``only``, just that command: ``bal status`` and its like then start without
    importing torch (a machine short of memory can still read its project).
    """
    from bal.project.db import DEFAULT_SETTINGS

    def wanted(name: str) -> bool:
        return only is None or only == name

    handlers = {"project": cmd_project, "query": cmd_query, "export": cmd_export, "import": cmd_import,
                "undo": cmd_undo, "fit": cmd_fit, "predict": cmd_predict, "status": cmd_status}
    if wanted("project"):
        _add_project_parser(subparsers, DEFAULT_SETTINGS)
    if wanted("query"):
        _add_query_parser(subparsers)
    if wanted("export"):
        _add_export_parser(subparsers)
    if wanted("import"):
        _add_import_parser(subparsers)
    if wanted("undo"):
        _add_undo_parser(subparsers)
    if wanted("fit"):
        _add_fit_parser(subparsers)
    if wanted("predict"):
        _add_predict_parser(subparsers)
    if wanted("status"):
        st = subparsers.add_parser("status", help="counts, class balance, cycles and what to do next")
        st.add_argument("dir", metavar="DIR", help="project folder")
    return {name: h for name, h in handlers.items() if wanted(name)}


def _add_project_parser(subparsers, defaults: dict) -> None:
    p = subparsers.add_parser(
        "project", help="a labelling project over a folder of your images: init, scan",
        description="A labelling project: DIR holds a database of your images, their labels (never "
                    "overwritten) and the query cycles. Then: bal query, bal export / bal serve, bal import, "
                    "bal fit, bal status.")
    actions = p.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    a = actions.add_parser(
        "init", help="create a project over an image folder",
        description="Scan FOLDER (sub-folders included, hidden files ignored) and record every image with "
                    "its sha256, size and mtime. Images in a folder named after a class (FOLDER/cat/x.jpg) "
                    "count as labelled with that class.")
    a.add_argument("dir", metavar="DIR", help="project folder to create (holds project.db)")
    add(a, "--images", required=True, metavar="FOLDER", help="the folder of images")
    add(a, "--classes", required=True, type=_class_list, metavar="A,B,...", help="the class names, comma-separated")
    add(a, "--net", default=defaults["net"],
        help="task and pretext network: cnn, resnet18, vgg16 (default: %(default)s)")
    add(a, "--image-size", type=image_side, default=None,
         help="square side the images are decoded to (default: the network's working size, 64 px for the "
              "built-in networks, or the images' own size when smaller; the aspect ratio is kept by a centre "
              "crop, or by padding beyond 2:1)")
    a.add_argument("--no-flip", "--no_flip", dest="flip", action="store_false", default=True,
                   help="no horizontal flips in training (digits, signs and text change meaning when mirrored)")
    add(a, "--seed", type=seed, default=defaults["seed"], help="fixes every random choice (default: %(default)s)")
    add(a, "--no-progress", action="store_true", help="no progress bars")
    s = actions.add_parser(
        "scan", help="pick up added, changed and vanished images",
        description="Add new image files; report images whose content changed (status changed) or whose "
                    "file vanished (status missing). Both leave the pool and keep their labels; an image "
                    "whose original content comes back returns to the pool.")
    s.add_argument("dir", metavar="DIR", help="project folder")
    add(s, "--accept-changed", action="store_true",
         help="take the current content of every changed image as the image, keeping its labels")
    add(s, "--no-progress", action="store_true", help="no progress bars")


def _add_query_parser(subparsers) -> None:
    from bal.cli.steps import add_embedding_flags, add_strategy_flags
    from bal.project.labelling import PRETEXT_EPOCHS, QUERY_STRATEGY

    q = subparsers.add_parser(
        "query", help="the next images to label, recorded as a new cycle",
        description="The next selection from the pool (every image with status ok), by any strategy of "
                    f"`bal train` (default: bal's recommendation, {QUERY_STRATEGY}). BAL: rotation pretext and CDD "
                    "order computed once per pool (cached in DIR/pretext), a window of width beta*A sliding along "
                    "it (planned cycles: max(q+1, ceil(N/K))), and in it the images the newest fitted model is "
                    "least confident about (the first query, with no model: its --first rule).")
    q.add_argument("dir", metavar="DIR", help="project folder")
    add(q, "--budget", type=positive_int, required=True, metavar="K", help="how many images to select")
    add_strategy_flags(q, strategy_default=None, default_note="the project's last query's value")
    add(q, "--pretext-epochs", type=positive_int, default=None,
         help=f"rotation pretext epochs (default: the project's, set by its first query; {PRETEXT_EPOCHS} then)")
    add(q, "--pretext-batch-size", type=positive_int, default=None,
         help="rotation pretext batch, in images (x4 rotations) (default: the project's; at first the authors' 256, "
              "lowered for images larger than 32 px so a step needs the memory of CIFAR's)")
    add(q, "--retrain-pretext", action="store_true",
         help="allow a --pretext-epochs or --pretext-batch-size other than the project's: trains a new pretext")
    add_embedding_flags(q)
    _run_flags(q)


def _add_export_parser(subparsers) -> None:
    e = subparsers.add_parser(
        "export", help="the current selection as CSV or Label Studio tasks",
        description="CSV: columns path,label,absolute_path (label filled only for images already labelled); "
                    "fill the label column and `bal import` it. Label Studio: a JSON list of tasks whose "
                    "data.image is /data/local-files/?d=<absolute path>; start Label Studio with "
                    "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT "
                    "set to the images folder or a parent, and add a Local files storage for the images "
                    "folder. data.bal_path is what `bal import` reads back.")
    e.add_argument("dir", metavar="DIR", help="project folder")
    add(e, "--format", choices=["csv", "labelstudio"], default="csv", help="(default: %(default)s)")
    add(e, "--out", default=None, metavar="FILE",
         help="output file (default: standard output for csv, DIR/export.json for labelstudio)")
    add(e, "--predictions", action="store_true",
        help="labelstudio: each unlabelled image carries the newest fitted model's class as a prediction "
             "(Choices name=choice toName=image)")


def _add_import_parser(subparsers) -> None:
    i = subparsers.add_parser(
        "import", help="labels back from a CSV or a Label Studio export",
        description="Read labels from FILE (CSV with a header naming path and label, other columns ignored; "
                    "or a Label Studio JSON export: the last annotation not cancelled, its first choice). "
                    "Every row is checked (known image, known class, no conflict with the image's current "
                    "label or with another row); by default nothing is recorded unless all rows are valid. "
                    "Rows without a label are skipped. One transaction.")
    i.add_argument("dir", metavar="DIR", help="project folder")
    i.add_argument("file", metavar="FILE", help=".csv or .json")
    add(i, "--format", choices=["csv", "labelstudio"], default=None, help="(default: from the extension)")
    add(i, "--partial", action="store_true", help="record the valid rows and list the others")
    add(i, "--relabel", action="store_true",
        help="a row giving a labelled image another class replaces its label (the old one stays in the "
             "history, retracted); without it such a row is a conflict")


def _add_undo_parser(subparsers) -> None:
    u = subparsers.add_parser(
        "undo", help="take labels back: of given images, or the last ones given",
        description="Retract labels (they stay in the history, marked retracted): the current label of each "
                    "PATH (relative to the images folder, as bal export writes them), or the --last N labels "
                    "given, whatever their source. The images become unlabelled again.")
    u.add_argument("dir", metavar="DIR", help="project folder")
    u.add_argument("paths", metavar="PATH", nargs="*", help="images whose label to take back")
    add(u, "--last", type=positive_int, default=None, metavar="N", help="take back the last N labels given")


def _add_fit_parser(subparsers) -> None:
    from bal.loop.cycles import TASK_MODELS
    from bal.project.labelling import FINETUNE_DEFAULTS, FIT_DEFAULTS, HOLDOUT

    f = subparsers.add_parser(
        "fit", help="train the task model on all labels; accuracy on a held-out split",
        description="Train a new model (the project's net) on every label. Inside each class with n labels, "
                    "floor(holdout*n + 0.5) images (at most n-1) are held out, chosen by the seed, never "
                    "trained on, and used for the accuracy. The model is saved to DIR/models/cycle-<id>.pth "
                    "and the next `bal query` uses it.")
    f.add_argument("dir", metavar="DIR", help="project folder")
    tuned = FINETUNE_DEFAULTS
    add(f, "--epochs", type=positive_int, default=None,
        help=f"(default: {FIT_DEFAULTS.epochs}; {tuned.epochs} with --task_model finetune)")
    add(f, "--batch-size", type=positive_int, default=None,
        help=f"(default: {FIT_DEFAULTS.batch_size}; {tuned.batch_size} with --task_model finetune)")
    add(f, "--lr", type=positive_float, default=None,
        help=f"SGD learning rate (default: {FIT_DEFAULTS.lr}; {tuned.lr} with --task_model finetune)")
    add(f, "--holdout", type=fraction(zero=True), default=HOLDOUT, help="held-out fraction per class, 0 for none "
                                                              "(default: %(default)s)")
    add(f, "--task_model", choices=list(TASK_MODELS), default=None,
        help="scratch: the project's network trained on the images; linear: a head on a frozen pretrained "
             "embedding, seconds on a CPU; finetune: that pretrained network trained on the images from the "
             "linear head "
             "(a GPU's work) (default: the project's last fit's, else linear when its queries read a "
             "pretrained embedding, else scratch)")
    add_pretrained_flags(f)
    add(f, "--head_C", type=positive_float, default=None, help="with linear: the head's inverse regularisation "
                                                              "(default 1, scikit-learn's C)")
    _run_flags(f)


def add_pretrained_flags(p) -> None:
    """--embedding and its companions, for the commands that only read a pretrained network (fit)."""
    from bal.cli.flags import add_network_flags, embedding

    add(p, "--embedding", type=embedding, default=None,
        help="with linear: efficientnet_lite0, timm:NAME or torchvision:NAME (default: the project's last "
             "query's, else efficientnet_lite0)")
    add_network_flags(p)


def _add_predict_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="the newest model's class and confidence for every unlabelled image",
        description="Apply the newest fitted model (bal fit) to every unlabelled image of the pool and write "
                    "path,label,confidence as CSV (to --out, else standard output), most confident first. "
                    "`bal export --format labelstudio --predictions` carries the same as pre-annotations.")
    p.add_argument("dir", metavar="DIR", help="project folder")
    add(p, "--out", default=None, metavar="FILE.csv", help="output file (default: standard output)")
    _run_flags(p)


#: How a query's rule reads in a sentence ("... under the model of cycle 3").
_RULE_WORDS = {"random (cycle 0)": "at random", "random": "at random", "confidence": "least confident",
               "margin": "smallest margin", "entropy": "highest entropy",
               "high1st": "the window's first images (high1st)", "low1st": "the window's last images (low1st)",
               "uni": "evenly spaced over the window (uni)", "rand": "at random",
               "typical": "the most typical image of each cluster of the window (typical)"}


# -- output helpers ----------------------------------------------------------------------
def _spec(strategy) -> str:
    """A strategy as the spec syntax writes it: ``bal[beta=1.2,first=high1st,...]`` (options that are set)."""
    options = [f"{k}={v}" for k, v in strategy.settings().items() if k != "name" and v is not None]
    return strategy.name + (f"[{','.join(options)}]" if options else "")


def _say(text: str = "", err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _per_class(counts: dict, classes, nonzero: bool = False) -> str:
    return ", ".join(f"{c} {counts.get(c, 0)}" for c in classes if counts.get(c, 0) or not nonzero)


def _listing(paths, indent: str = "  ") -> str:
    return "\n".join(f"{indent}{p}" for p in paths)


def _device(args):
    from bal.engine.runtime import resolve_device

    return resolve_device(args.device)


def _open(args):
    from bal.project.db import Project

    return Project.open(args.dir)


# -- handlers ----------------------------------------------------------------------------
def cmd_project(args) -> int:
    return {"init": cmd_init, "scan": cmd_scan}[args.project_command](args)


def cmd_init(args) -> int:
    from bal.project.scan import init_project

    project, report = init_project(
        args.dir, args.images, args.classes, net=args.net, image_size=args.image_size, seed=args.seed, flip=args.flip,
        progress=not args.no_progress,
    )
    with project:
        classes = project.classes
        n_labelled = sum(report.labelled.values())
        _say(f"project created in {args.dir}: {report.n_images} images under {project.images_root}")
        size = (f"image size {report.image_size} px: {report.size_reason}; change it with --image-size"
                if report.image_size else "image size: chosen from the first images a scan adds")
        _say(f"settings: net {args.net}, seed {args.seed}, horizontal flips {'on' if args.flip else 'off'}\n{size}")
        _say(f"labelled from class folders: {n_labelled} ({_per_class(report.labelled, classes)}); "
             f"unlabelled: {report.n_images - n_labelled}")
        _say_loose_folders(report.loose_folders)
        if report.unreadable:
            _say(f"left out {len(report.unreadable)} file(s) that cannot be read (scan again once fixed):", err=True)
            _say("\n".join(f"  {p}: {why}" for p, why in report.unreadable), err=True)
        if report.n_images:
            _say(f"next: bal query {args.dir} --budget K   (K = how many images to label in this round)")
        else:
            _say(f"next: put images under {project.images_root}, then bal project scan {args.dir}")
    return 0


def _say_loose_folders(loose: dict[str, str]) -> None:
    for folder, name in loose.items():
        _say(f"class folder {folder + '/'!r} taken as class {name!r} (the names differ only in case or spaces)")


def cmd_scan(args) -> int:
    from bal.project.scan import scan_project

    with _open(args) as project:
        r = scan_project(project, accept_changed=args.accept_changed, progress=not args.no_progress)
        d = args.dir
        _say(f"scanned {project.images_root}")
        if r.added:
            n = sum(r.added_labelled.values())
            by_class = _per_class(r.added_labelled, project.classes, nonzero=True)
            extra = f" ({n} labelled from class folders: {by_class})" if n else ""
            _say(f"added {len(r.added)} image(s){extra}:\n{_listing(r.added)}")
            _say_loose_folders(r.loose_folders)
        if r.accepted:
            _say(f"accepted the new content of {len(r.accepted)} changed image(s), labels kept:\n"
                 f"{_listing(r.accepted)}")
        if r.returned:
            _say(f"back in the pool, original content found again: {len(r.returned)} image(s):\n{_listing(r.returned)}")
        if r.changed:
            _say(f"CHANGED: {len(r.changed)} image(s) differ from when they were added (their content, by sha256); "
                 f"they are out of the pool, their labels are kept:\n{_listing(r.changed)}")
            _say(f"  what you can do: if it is still the same picture (re-saved, metadata edited), keep it with its\n"
                 f"  labels: bal project scan {d} --accept-changed\n"
                 f"  if it is a different picture, restore the original file, or give the new one another name\n"
                 f"  (it is then added as a new image and the old entry is reported missing)")
        if r.missing:
            _say(f"MISSING: {len(r.missing)} image(s) whose file is gone; out of the pool, labels kept:\n"
                 f"{_listing(r.missing)}")
            _say("  put the files back (same content) and scan again to return them to the pool")
        if r.unreadable:
            _say(f"could not read {len(r.unreadable)} new file(s) (not added; scan again once fixed):\n"
                 + "\n".join(f"  {p}: {why}" for p, why in r.unreadable))
        if not (r.added or r.accepted or r.returned or r.changed or r.missing or r.unreadable):
            _say("no changes")
        if r.labels_kept:
            _say(f"labels kept on changed or missing images: {r.labels_kept}")
    return 0


#: The embedding flags of bal query, as keys of its stored settings.
EMBEDDING_KEYS = ("view", "feature_norm", "embedding", "features", "backbone", "weights", "embedding_size",
                  "download")


def cmd_query(args) -> int:
    from bal.cli.steps import strategy_flags_given, strategy_from_flags
    from bal.data import generic_preset
    from bal.project.labelling import QUERY_STRATEGY, query
    from bal.selection import EMBEDDING_OPTIONS, parse_strategy

    with _open(args) as project:
        # a flag left out takes the project's value from its last query (stored), else bal's default
        stored = project.settings().get("query") or {}
        name, spec_options = parse_strategy(args.strategy) if args.strategy else (None, {})
        recommended, why = None, ""
        if not name and not stored.get("strategy"):
            # bal's recommendation for this machine: on a pretrained embedding when the extra is installed,
            # unless the flags name an embedding, whose own recommendation then applies
            from bal.embedding import EmbeddingChoice
            from bal.recommend import PRETRAINED, SCRATCH, recommendation

            recommended, why = recommendation()
            named = EmbeddingChoice.named_kind(vars(args))
            if named:
                recommended = PRETRAINED if named == "pretrained" else SCRATCH
            name, spec_options = parse_strategy(recommended.strategy)
        name = name or stored.get("strategy") or QUERY_STRATEGY
        embedding_options = {k: spec_options.pop(k) for k in EMBEDDING_OPTIONS if k in spec_options}
        options = {**(stored.get("options", {}) if name == stored.get("strategy") else {}),
                   **strategy_flags_given(args), **spec_options}
        strategy = strategy_from_flags(argparse.Namespace(**{**vars(args), **options, "strategy": name}),
                                       generic_preset("project"))
        given = {**embedding_options,
                 **{k: getattr(args, k) for k in EMBEDDING_KEYS if getattr(args, k) is not None}}
        base = dict(stored.get("embedding") or {})
        if given.keys() & {"embedding", "features", "backbone"}:  # a new source replaces the stored one
            base = {k: v for k, v in base.items() if k not in ("embedding", "features", "backbone")}
        if recommended is not None and recommended.embedding != "rotation" and not (
                base.keys() | given.keys()) & {"embedding", "features", "backbone"}:
            base = {**base, "embedding": recommended.embedding, "feature_norm": base.get("feature_norm")}
        embedding = {k: v for k, v in {**base, **given}.items() if v is not None}
        where = "as given" if args.strategy else ("the project's, from its last query" if stored.get("strategy")
                                                  else why)
        _say(f"strategy: {_spec(strategy)} on {embedding.get('embedding') or embedding.get('features') or 'rotation'}"
             f" features ({where})", err=True)
        if args.pretext_epochs is not None and not strategy.needs:
            _say(f"note: --pretext-epochs {args.pretext_epochs} is not used: {strategy.name} needs no rotation "
                 f"pretext", err=True)
        r = query(project, args.budget, strategy=strategy, pretext_epochs=args.pretext_epochs,
                  pretext_batch_size=args.pretext_batch_size, retrain_pretext=args.retrain_pretext,
                  embedding=embedding, device=_device(args), progress=not args.no_progress)
        project.write_settings({**project.settings(),
                                "query": {"strategy": name, "options": options, "embedding": embedding}})
        d = args.dir
        if r.unlabelled_before:
            _say(f"note: {r.unlabelled_before} image(s) of the previous selection are still unlabelled; they may "
                 f"be selected again", err=True)
        rule = _RULE_WORDS.get(r.info["rule"], r.info["rule"])
        how = (f"{rule} under the model fitted in cycle {r.model_cycle}" if r.model_cycle is not None
               else f"no fitted model yet, so {rule}")
        w = r.info.get("window")
        # a window strategy walks its order in about N/K windows; the others have no plan to speak of
        where = (f", window [{w[0]}, {w[1]}) of the CDD order (window {r.q + 1} of the {r.n_planned} that cover it)"
                 if w else "")
        _say(f"cycle {r.cycle_id}: {len(r.selected)} image(s) to label from a pool of {r.pool_size}, by "
             f"{strategy.name}{where}; {how}")
        if r.info.get("n_topped_up"):
            _say(f"the window held fewer than {args.budget} unlabelled images; {r.info['n_topped_up']} came from "
                 f"just outside it")
        _say(" rank  path")
        for rank, row in enumerate(r.selected, start=1):
            _say(f"{rank:5d}  {row.path}")
        _say(f"next: label them on the labelling page: bal serve {d}\n"
             f"  or: bal export {d} --format csv --out batch.csv, fill the label column, bal import {d} batch.csv\n"
             f"  or: bal export {d} --format labelstudio, label in Label Studio, export JSON, bal import {d} FILE\n"
             f"then: bal fit {d}")
    return 0


def cmd_export(args) -> int:
    import json

    from bal.project import formats

    with _open(args) as project:
        cycle_id, rows, left_out = formats.current_selection(project)
        if left_out:
            _say(f"left out {len(left_out)} selected image(s) that are changed or missing "
                 f"(bal project scan {args.dir}):\n{_listing(r.path for r in left_out)}", err=True)
        if args.format == "csv":
            text = formats.export_csv(project, rows)
            if args.out is None:
                sys.stdout.write(text)
                sys.stdout.flush()
                _say(f"exported the {len(rows)} image(s) of cycle {cycle_id}; fill the label column and run "
                     f"bal import {args.dir} FILE", err=True)
                return 0
            out = Path(args.out)
            formats.write_export(out, text)
            _say(f"exported the {len(rows)} image(s) of cycle {cycle_id} to {out}; fill the label column "
                 f"({', '.join(project.classes)}) and run bal import {args.dir} {out}")
            return 0
        out = Path(args.out) if args.out else Path(args.dir) / "export.json"
        predicted, version = None, ""
        if getattr(args, "predictions", False):
            from bal.project.labelling import predict_pool

            fitted_id, found = predict_pool(project)
            predicted = {p.row.id: (p.label, p.confidence) for p in found}
            version = f"bal cycle {fitted_id}"
        tasks = formats.export_label_studio(project, rows, predicted, version)
        formats.write_export(out, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
        _say(f"exported the {len(rows)} image(s) of cycle {cycle_id} as Label Studio tasks to {out}")
        _say(f"  Label Studio must serve local files: start it with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true\n"
             f"  and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={project.images_root} (or a parent), add a Local files\n"
             f"  storage for {project.images_root}, use <Image name=\"image\" value=\"$image\"/> and one\n"
             f"  <Choices name=\"choice\" toName=\"image\"> with {', '.join(project.classes)},\n"
             f"  import {out.name}; when done, export JSON and run bal import {args.dir} FILE.json")
    return 0


def cmd_import(args) -> int:
    from bal.project.formats import import_labels

    with _open(args) as project:
        r = import_labels(project, args.file, fmt=args.format, partial=args.partial, relabel=args.relabel)
        extra = []
        if r.relabelled:
            extra.append(f"{r.relabelled} relabelled")
        if r.unchanged:
            extra.append(f"{r.unchanged} already had that label")
        if r.no_label:
            extra.append(f"{r.no_label} {r.unit}(s) without a label skipped")
        _say(f"imported {r.applied} label(s) from {args.file}" + (f" ({'; '.join(extra)})" if extra else ""))
        if r.bad_count:
            _say(f"not imported (--partial): {r.bad_count} {r.unit}(s):\n{r.bad_lines()}")
    return 0


def cmd_undo(args) -> int:
    from bal.errors import BalError

    if bool(args.paths) == bool(args.last):
        raise BalError("give the images whose label to take back (PATH ...), or --last N, one of the two")
    with _open(args) as project:
        if args.last:
            undone = project.retract_last(args.last)
        else:
            rows = [project.image_by_path(p.strip().replace("\\", "/")) for p in args.paths]
            unknown = [p for p, r in zip(args.paths, rows) if r is None]
            if unknown:
                raise BalError(f"not images of this project: {', '.join(unknown)}")
            unlabelled = [r.path for r in rows if r.label is None]
            if unlabelled:
                raise BalError(f"these images have no label to take back: {', '.join(unlabelled)}")
            undone = project.retract_current([r.id for r in rows])
        for path, label in undone:
            _say(f"took back {label!r} from {path}")
        _say(f"{len(undone)} label(s) taken back (kept in the history, retracted)")
    return 0


def cmd_fit(args) -> int:
    from dataclasses import replace

    from bal.embedding import EmbeddingChoice
    from bal.engine.head import HeadConfig
    from bal.project.labelling import FINETUNE_DEFAULTS, FIT_DEFAULTS, fit
    from bal.recommend import PRETRAINED

    with _open(args) as project:
        settings = project.settings()
        stored = settings.get("fit") or {}
        query_embedding = (settings.get("query") or {}).get("embedding") or {}
        pretrained_query = EmbeddingChoice.named_kind(query_embedding) == "pretrained"
        task_model = args.task_model or stored.get("task_model") or ("linear" if pretrained_query else "scratch")
        asked = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
                 if v is not None}
        train = replace(FINETUNE_DEFAULTS if task_model == "finetune" else FIT_DEFAULTS, **asked)
        embedding = {}
        if task_model != "scratch":
            given = {k: getattr(args, k) for k in ("embedding", "weights", "embedding_size", "download")
                     if getattr(args, k) is not None}
            embedding = given or stored.get("embedding") or (
                query_embedding if pretrained_query else {"embedding": PRETRAINED.embedding})
        head = HeadConfig(C=args.head_C if args.head_C is not None else stored.get("C", 1.0))
        r = fit(project, train=train, holdout=args.holdout, task_model=task_model, embedding=embedding, head=head,
                device=_device(args), progress=not args.no_progress)
        project.write_settings({**project.settings(), "fit": {"task_model": task_model, "embedding": embedding,
                                                              "C": head.C}})
        m = r.metrics
        if task_model == "finetune":
            _say(f"fine-tuned {m['embedding']} with a head on {m['trained_on']} of {m['labelled']} labels, "
                 f"{m['held_out']} held out ({_per_class(m['per_class'], project.classes)} labels per class), "
                 f"{m['epochs']} epoch(s)")
        elif task_model == "linear":
            _say(f"fitted a linear head on {m['embedding']} with {m['trained_on']} of {m['labelled']} labels, "
                 f"{m['held_out']} held out ({_per_class(m['per_class'], project.classes)} labels per class), "
                 f"{m['seconds']:.1f} s")
        else:
            _say(f"fitted {settings['net']} on {m['trained_on']} of {m['labelled']} labels, {m['held_out']} held "
                 f"out ({_per_class(m['per_class'], project.classes)} labels per class), {m['epochs']} epoch(s)")
        if m["accuracy"] is None:
            _say(f"held-out accuracy: none (no class has enough labels; a class with n labels holds out "
                 f"floor({args.holdout:g}*n + 0.5), at most n-1)")
        else:
            per = ", ".join(f"{c} {v:.1f} % of {m['held_out_per_class'][c]}"
                            for c, v in m["per_class_accuracy"].items() if v is not None)
            _say(f"held-out accuracy: {m['accuracy']:.1f} % on {m['held_out']} images ({per})")
            for warning in m["warnings"]:
                _say(f"  careful: {warning}")
        _say(f"model: {Path(args.dir) / r.model_path} (cycle {r.cycle_id})")
        _say(f"next: bal query {args.dir} --budget K")
    return 0


def cmd_predict(args) -> int:
    from bal.project.formats import export_predictions
    from bal.project.labelling import predict_pool

    with _open(args) as project:
        cycle_id, predictions = predict_pool(project, device=_device(args), progress=not args.no_progress)
        text = export_predictions(predictions)
        if args.out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            from bal.project.formats import write_export

            write_export(Path(args.out), text)
        _say(f"predicted {len(predictions)} unlabelled image(s) with the model of cycle {cycle_id}"
             + (f" -> {args.out}" if args.out else ""), err=args.out is None)
    return 0


def cmd_status(args) -> int:
    from bal.project.status import status

    with _open(args) as project:
        s = status(project)
        c = s.counts
        _say(f"project {args.dir} (images under {project.images_root})")
        _say(f"images: {c['ok']} ok, {c['changed']} changed, {c['missing']} missing; "
             f"{s.labelled} labelled, {s.unlabelled} unlabelled")
        if s.labels_on_absent:
            _say(f"labels kept on changed or missing images: {s.labels_on_absent}")
        _say(f"labels per class: {_per_class(s.per_class, project.classes)}")
        if s.cycles:
            _say("cycles:")
            _say(f"  {'id':>4}  {'created (UTC)':<23}  {'strategy':<8}  {'budget':>6}  {'labelled':>8}  accuracy")
            for cy in s.cycles:
                acc = ("-" if not cy["fitted"] else "n/a" if cy["accuracy"] is None
                       else f"{cy['accuracy']:.1f} % ({cy['held_out']} held out)")
                _say(f"  {cy['id']:>4}  {cy['created_at'][:23]:<23}  {cy['strategy']:<8}  {cy['budget']:>6}  "
                     f"{cy['labelled_now']:>8}  {acc}")
        else:
            _say("cycles: none yet")
        for step in s.next_steps:
            _say(f"next: {step}")
    return 0
