"""Label your own images: a project folder with its database, queries, import/export and a labelling page."""

from bal.project.db import DB_NAME, SCHEMA_VERSION, ImageRow, Label, Project

__all__ = ["DB_NAME", "SCHEMA_VERSION", "ImageRow", "Label", "Project"]
