"""``signclip index build|add`` (faiss index + parquet metadata) and ``signclip search``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pandas as pd
import typer

from signclip.cli.hub import MODEL_HELP, load_model
from signclip.errors import UsageError

index_app = typer.Typer(no_args_is_help=True, help="Build and extend embedding indexes (faiss + parquet).")

KIND_HELP = ("flat (exact, default), flat16 (exact top-k re-ranked from an fp16 scan, ~2x faster on large "
             "collections), hnsw or ivf (approximate, for large collections)")


def _texts(texts: Optional[list[str]], vocab: Optional[Path]) -> list[str]:
    out = list(texts or [])
    if vocab:
        out += [line.strip() for line in vocab.read_text().splitlines() if line.strip()]
    return out


def _add_to_index(index, m, data: Optional[str], texts: list[str], texts_from_data: bool,
                  spoken_language: Optional[str], signed_language: Optional[str], batch_size: int) -> dict[str, int]:
    """Embed a dataset's poses and/or texts into ``index``; returns the number added per part."""
    from signclip.data.arrays import load_arrays, none_usable
    from signclip.data.manifests import load_dataset, optional_column

    added = {}
    if data:
        df = load_dataset(data)
        arrays, kept, errors = load_arrays(df, m.cfg.pose)  # warns of the rows it skips
        if not arrays:
            raise none_usable(str(data), len(df), errors)
        emb = m.encode_arrays(arrays, batch_size, progress=True)  # (N, E)
        meta = kept.drop(columns=[c for c in kept.columns if kept[c].isna().all()])
        meta["frames"] = [a.shape[0] for a in arrays]
        index.add("pose", emb, meta)
        added["pose"] = len(emb)
        if texts_from_data:
            triples = kept[["text", "spoken_language", "signed_language"]].drop_duplicates().reset_index(drop=True)
            prompts = m.prompts(triples["text"].tolist(), optional_column(triples, "spoken_language"),
                                optional_column(triples, "signed_language"))
            emb = m.encode_text(prompts, batch_size=batch_size, progress=True)
            index.add("text", emb, triples.assign(prompt=prompts))
            added["text"] = len(emb)
    if texts:
        prompts = m.prompts(texts, spoken_language, signed_language)
        emb = m.encode_text(prompts, batch_size=batch_size, progress=True)
        meta = pd.DataFrame({"text": texts, "spoken_language": spoken_language, "signed_language": signed_language,
                             "prompt": prompts})
        index.add("text", emb, meta)
        added["text"] = added.get("text", 0) + len(emb)
    if not added:
        raise UsageError("nothing to index: give --data and/or --text/--vocab/--texts-from-data")
    return added


@index_app.command("build")
def index_build(
    model: str = typer.Argument(..., help=MODEL_HELP),
    out: Path = typer.Argument(..., help="index directory to create"),
    data: Optional[str] = typer.Option(None, help="poses: 'lexicon', a manifest CSV or a folder with manifest.csv"),
    text: Optional[list[str]] = typer.Option(None, "--text", "-t", help="a text to index (repeatable)"),
    vocab: Optional[Path] = typer.Option(None, help="a file with one text per line"),
    texts_from_data: bool = typer.Option(False, help="also index the (text, languages) prompts of --data"),
    spoken_language: Optional[str] = typer.Option(None, "--spoken-language", "-s", help="for --text/--vocab"),
    signed_language: Optional[str] = typer.Option(None, "--signed-language", "-l", help="for --text/--vocab"),
    kind: str = typer.Option("flat", help=KIND_HELP),
    batch_size: int = 32,
    overwrite: bool = typer.Option(False, help="replace an existing index"),
) -> None:
    """Embed poses and/or texts with MODEL and write a searchable index to OUT."""
    from signclip.models.hub import is_hub_id
    from signclip.serve.index import SearchIndex

    if (out / "index.json").exists() and not overwrite:
        raise UsageError(f"{out}: an index exists; use `signclip index add` or --overwrite")
    m = load_model(model, "auto")
    # the index remembers its model for `index add` / `search`: a hub id as it is, a directory absolute
    index = SearchIndex.for_model(m, kind, model if is_hub_id(model) else str(Path(model).resolve()))
    added = _add_to_index(index, m, data, _texts(text, vocab), texts_from_data, spoken_language, signed_language,
                          batch_size)
    index.save(out)
    typer.echo(f"indexed {added} into {out} ({kind}); sizes {index.sizes()}")


@index_app.command("add")
def index_add(
    index_dir: Path = typer.Argument(..., help="existing index directory"),
    data: Optional[str] = typer.Option(None, help="poses: 'lexicon', a manifest CSV or a folder"),
    text: Optional[list[str]] = typer.Option(None, "--text", "-t"),
    vocab: Optional[Path] = typer.Option(None),
    texts_from_data: bool = typer.Option(False),
    spoken_language: Optional[str] = typer.Option(None, "--spoken-language", "-s"),
    signed_language: Optional[str] = typer.Option(None, "--signed-language", "-l"),
    model: Optional[str] = typer.Option(None, help="model directory or hf-hub:ORG/NAME (default: the one that "
                                                   "built the index)"),
    batch_size: int = 32,
) -> None:
    """Add poses and/or texts to an existing index (incremental)."""
    from signclip.serve.index import SearchIndex

    index = SearchIndex.load(index_dir)
    m = load_model(model or index.model, "auto")
    index.check_model(m)
    added = _add_to_index(index, m, data, _texts(text, vocab), texts_from_data, spoken_language, signed_language,
                          batch_size)
    index.save(index_dir)
    typer.echo(f"added {added} to {index_dir}; sizes {index.sizes()}")


def search_cmd(
    index_dir: Path = typer.Argument(..., help="index directory"),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="text query (searches poses)"),
    pose: Optional[Path] = typer.Option(None, "--pose", "-p", help=".pose query (searches texts if indexed)"),
    spoken_language: Optional[str] = typer.Option(None, "--spoken-language", "-s"),
    signed_language: Optional[str] = typer.Option(None, "--signed-language", "-l"),
    k: int = typer.Option(10, "-k", min=1, help="number of results (at least 1)"),
    target: Optional[str] = typer.Option(None, help="'pose' or 'text' (default: the other modality)"),
    model: Optional[str] = typer.Option(None, help="model directory or hf-hub:ORG/NAME (default: the one that "
                                                   "built the index)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Search an index with a text (-> poses) or a .pose file (-> texts): top-k with scores and metadata."""
    from signclip.serve.index import SearchIndex
    from signclip.serve.schemas import records

    if (text is None) == (pose is None):
        raise UsageError("give exactly one of --text or --pose")
    index = SearchIndex.load(index_dir)
    m = load_model(model or index.model, "auto")
    index.check_model(m)
    if text is not None:
        query = m.encode_text([text], spoken_language, signed_language)  # (1, E)
        target = target or "pose"
    else:
        query = m.encode_pose([str(pose)])  # (1, E)
        target = target or ("text" if index.sizes().get("text") else "pose")
    table = index.search(query, target, k)[0]
    if as_json:
        typer.echo(json.dumps(records(table), indent=2, default=str))
        return
    cols = [c for c in ("rank", "score", "text", "spoken_language", "signed_language", "prompt", "path")
            if c in table.columns]
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        typer.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
