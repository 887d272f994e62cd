"""The tables of any results file the verbs write, from the file alone (``rsdistill tables``):
an experiment's ``results.json`` (cross-validated or not) or a sweep's ``curve.json``, a pretraining
experiment's, an unmixing evaluation's (one scene, or several gathered under their names, at any
depth), ``teacher-knowledge``'s, ``benchmark --out``'s and a ``benchmarks/`` script's ``--out``
(``evaluation.script_report``). The same functions wrote each run's ``results.md``, so a published
table is checked against its committed file by rendering it again (``tests/test_results_files.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from rsdistill.errors import InputError
from rsdistill.evaluation import script_report
from rsdistill.evaluation.benchmark import markdown as benchmark_markdown
from rsdistill.evaluation.teacher_knowledge import markdown as teacher_knowledge_markdown
from rsdistill.experiments import cross_validation, curve, pretrain, tables, unmixing


def render(results: dict | list, level: int = 3) -> str:
    """The Markdown tables of a results file's contents, told apart by what each verb writes; a
    mapping of named results (scenes, variants) gets a heading of ``level`` per name."""
    if isinstance(results, list):
        return benchmark_markdown(results)
    if "report" in results and "items" in results:  # a benchmarks/ script's --out
        return script_report.markdown(results)
    if "config" in results and "results" in results:
        return teacher_knowledge_markdown(results["results"])
    if "points" in results and "option" in results:  # a sweep's curve.json
        return curve.curve_tables(results)
    if "folds" in results:
        return cross_validation.results_markdown(results)
    if "summary" in results:
        return (pretrain if "recipe" in results["summary"][0] else tables).results_markdown(results)
    if "runs" in results:
        return unmixing.results_markdown(results)
    if results and all(isinstance(v, dict) for v in results.values()):
        return "\n".join(f"{'#' * level} {name}\n\n{render(value, level + 1)}" for name, value in results.items())
    raise InputError("not a results file of rsdistill experiment, pretrain-experiment, unmixing-eval, teacher-knowledge, "
                     "benchmark --out or a benchmarks/ script's --out")


def render_files(paths) -> str:
    """Each file's tables under a heading naming it (what ``rsdistill tables`` prints)."""
    return "\n".join(f"## {path}\n\n{render_file(path)}" for path in paths)


def render_file(path) -> str:
    """``render`` of the JSON file at ``path``; a file that is not one is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such results file")
    try:
        return render(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error})") from None
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise InputError(f"{path}: not a results file as rsdistill writes them ({type(error).__name__}: {error})") from None
