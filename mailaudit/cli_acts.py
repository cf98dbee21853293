"""Commands of the classifier: classify, label export/import, train, evaluate (registered by cli.py)."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailaudit.labels import ACTS

if TYPE_CHECKING:
    from mailaudit.cli import Ctx

MODEL_OPTION = click.option(
    "--model", "model_dir", metavar="DIR", type=click.Path(path_type=Path),
    help="Model directory (default: your retrained model, else the shipped one).",
)


@click.command()
@MODEL_OPTION
@click.pass_obj
def classify(obj: Ctx, model_dir: Path | None) -> None:
    """Predict the acts of every message that has no prediction from the current model."""
    from mailaudit.acts import classify_store, current_model

    cfg = obj.config()
    model = current_model(model_dir)
    with obj.writing(cfg) as conn:
        s = classify_store(conn, model, obj.progress())
    found = ", ".join(f"{n} {a}" for a, n in s.counts.items())
    click.echo(f"classified {s.predicted} messages with model {s.model} ({found})")


@click.group()
def label() -> None:
    """Export messages to label in a spreadsheet, and import the labels back."""


@label.command("export")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="CSV file to write.")
@click.option("--uncertain", type=click.IntRange(min=1), metavar="N", help="Only the N least certain messages.")
@click.option("--contact", metavar="ADDR", help="Only messages from or to this address.")
@click.option("--thread", metavar="ID", help="Only this thread (mailaudit or Gmail thread id).")
@click.pass_obj
def label_export(obj: Ctx, out: Path, uncertain: int | None, contact: str | None, thread: str | None) -> None:
    """Write a CSV with an empty `acts` column to fill (acts separated by ';')."""
    from mailaudit.acts import export_labels

    cfg = obj.config()
    with closing(obj.open(cfg)) as conn:
        n = export_labels(conn, out, uncertain, contact, thread)
    click.echo(f"wrote {n} messages to {out}; fill the acts column ({';'.join(ACTS)}) and run `mailaudit label import`")


@label.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.pass_obj
def label_import(obj: Ctx, file: Path) -> None:
    """Store labels from a CSV (columns message_id and acts); they override predictions everywhere."""
    from mailaudit.acts import import_labels

    cfg = obj.config()
    with obj.writing(cfg) as conn:
        res = import_labels(conn, file)
    tail = f"; {len(res.missing)} rows name messages not in the store" if res.missing else ""
    click.echo(f"stored {res.stored} labels from {file}{tail}")


@click.command()
@click.option("--labels", "label_files", multiple=True, type=click.Path(path_type=Path), metavar="FILE.csv",
              help="Extra label files (repeatable); their messages must be in the store.")
@click.option("--out", type=click.Path(path_type=Path), metavar="DIR", help="Where to write the model.")
@click.option("--corpus", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Written training corpus (*.jsonl; default: the one shipped with mailaudit).")
@click.pass_obj
def train(obj: Ctx, label_files: tuple[Path, ...], out: Path | None, corpus: Path | None) -> None:
    """Train on the shipped corpus plus your stored and given labels; print cross-validated scores."""
    from mailaudit.acts import train_model

    cfg = obj.config()
    with closing(obj.open(cfg)) as conn:
        report, path = train_model(conn, list(label_files), out, corpus)
    click.echo(_score_table("cross-validated, all training data", report.cv))
    if report.real:
        click.echo(_score_table("cross-validated, labelled real mail only", report.real))
    click.echo(f"model {report.model.version} written to {path} ({report.seconds:.0f} s)")


@click.command()
@click.option("--labels", "label_file", required=True, type=click.Path(path_type=Path), metavar="FILE.csv")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@MODEL_OPTION
@click.pass_obj
def evaluate(obj: Ctx, label_file: Path, as_json: bool, model_dir: Path | None) -> None:
    """Score the current model on labelled messages that are in the store."""
    from mailaudit.acts import current_model
    from mailaudit.acts import evaluate as run_evaluation

    cfg = obj.config()
    model = current_model(model_dir)
    with closing(obj.open(cfg)) as conn:
        ev = run_evaluation(conn, model, label_file)
    if as_json:
        click.echo(json.dumps(ev.metrics, indent=2))
        return
    click.echo(_score_table(f"model {model.version} on {label_file}", ev.metrics))
    if ev.missing:
        click.echo(f"{len(ev.missing)} labelled messages are not in the store (import their mailbox first)")
    click.echo(f"{len(ev.wrong)} messages predicted wrong:")
    for mid, truth, pred in ev.wrong:
        detail = f"  labelled {';'.join(truth) or '-'}, predicted {';'.join(pred) or '-'}" if obj.verbose else ""
        click.echo(f"  {mid}{detail}")


def _score_table(title: str, m: dict) -> str:
    lines = [f"{title}: {m['n']} messages, micro F1 {m['micro_f1']:.3f}, macro F1 {m['macro_f1']:.3f}",
             f"  {'act':<16}{'precision':>10}{'recall':>8}{'F1':>7}{'support':>9}"]
    for act, s in m["per_act"].items():
        lines.append(f"  {act:<16}{s['precision']:>10.3f}{s['recall']:>8.3f}{s['f1']:>7.3f}{s['support']:>9}")
    return "\n".join(lines)


@click.command()
@click.argument("address")
@click.option("--undo", is_flag=True, help="Remove the tombstone so the contact's mail may be stored again.")
@click.pass_obj
def forget(obj: Ctx, address: str, undo: bool) -> None:
    """Remove a contact's messages, acts, labels and report data from the store, and keep them out."""
    from mailaudit.addresses import normalise_address
    from mailaudit.ingest import settle
    from mailaudit.tombstones import forget_contact, undo_forget

    cfg = obj.config()
    addr = normalise_address(address)
    with obj.writing(cfg) as conn:
        if undo:
            found = undo_forget(conn, addr)
            click.echo(f"{addr}: tombstone removed; import or sync again to bring their mail back" if found
                       else f"{addr}: was not forgotten")
            return
        res = forget_contact(conn, addr)
        settle(conn, cfg)
    click.echo(f"forgot {addr}: {res.messages} messages removed, {res.reports} stored reports cleaned; "
               "their mail will not be stored again (undo with --undo)")
