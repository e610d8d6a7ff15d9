"""Where a project stands: counts, class balance, cycles, and what to do next."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bal.project.db import Project

__all__ = ["Status", "status"]


@dataclass
class Status:
    counts: dict[str, int]  # ok, changed, missing
    labelled: int  # images of the pool with a current label
    unlabelled: int
    labels_on_absent: int  # current labels of changed or missing images (kept)
    per_class: dict[str, int]  # labels per class, pool images
    cycles: list[dict]  # id, created_at, strategy, budget, labelled_now, accuracy, fitted
    next_steps: list[str]


def status(project: Project) -> Status:
    every = project.images(None)
    counts = Counter(r.status for r in every)
    pool = [r for r in every if r.status == "ok"]
    labelled = [r for r in pool if r.label is not None]
    per_class = Counter(r.label for r in labelled)
    labelled_now = project.selected_and_labelled()
    cycles = []
    for c in project.cycles():
        m = c["metrics"] or {}
        cycles.append({"id": c["id"], "created_at": c["created_at"], "strategy": c["strategy"],
                       "budget": c["budget"], "labelled_now": labelled_now.get(c["id"], 0),
                       "accuracy": m.get("accuracy"), "held_out": m.get("held_out"),
                       "fitted": c["model_path"] is not None, "trained_labels": m.get("labelled")})
    d = project.folder
    steps: list[str] = []
    if counts.get("changed") or counts.get("missing"):
        absent = " and ".join(f"{counts[s]} {s}" for s in ("changed", "missing") if counts.get(s))
        steps.append(f"{absent} image(s) are out of the pool (labels kept); `bal project scan {d}` lists them "
                     f"and says what to do")
    if not pool:
        steps.append(f"add images under {project.images_root} and run `bal project scan {d}`")
    else:
        _, selection = project.current_selection()
        todo = [r for r in selection if r.status == "ok" and r.label is None]
        last_fit = next((c for c in reversed(cycles) if c["fitted"]), None)
        if todo:
            steps.append(f"label the {len(todo)} image(s) of cycle {cycles[-1]['id']}: `bal serve {d}` "
                         f"or `bal export {d}`, then `bal import {d} FILE`")
        elif not cycles and len(labelled) < len(pool):
            steps.append(f"run `bal query {d} --budget K` for the first images to label (K = how many)")
        elif labelled and (last_fit is None or (last_fit["trained_labels"] or 0) != len(labelled)):
            steps.append(f"run `bal fit {d}` to train on the {len(labelled)} labels")
        elif len(labelled) < len(pool):
            k = next((c["budget"] for c in reversed(cycles) if c["budget"] > 0), None)
            steps.append(f"run `bal query {d} --budget {k if k else 'K'}` for the next images to label")
        else:
            steps.append("every image is labelled; add images and run `bal project scan` for more")
    return Status(
        counts={s: counts.get(s, 0) for s in ("ok", "changed", "missing")},
        labelled=len(labelled), unlabelled=len(pool) - len(labelled),
        labels_on_absent=sum(1 for r in every if r.status != "ok" and r.label is not None),
        per_class={c: per_class.get(c, 0) for c in project.classes},
        cycles=cycles, next_steps=steps,
    )
