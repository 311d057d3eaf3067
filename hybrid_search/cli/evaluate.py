"""``hybrid-search eval | tune | untune | finetune``: relevance on judged queries, fusion tuning and the tuned
configuration it saves (:mod:`hybrid_search.evaluation.tuned`), and fine-tuning the text encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hybrid_search.cli.common import JsonOpt, compared_services, echo, err, out, print_json, search_service
from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings, get_settings

QueriesOpt = Annotated[
    str,
    typer.Option(
        "--queries",
        help="TSV qid<TAB>text, or with a header line qid<TAB>text<TAB>image for photo (+ text) queries.",
    ),
]
QrelsOpt = Annotated[str, typer.Option("--qrels", help="TSV qid<TAB>doc_id<TAB>grade.")]
GradeOffsetOpt = Annotated[
    float, typer.Option(help="Subtracted from grades to get gains (Home Depot: 1, its lowest grade).")
]
RelevantGradeOpt = Annotated[
    float, typer.Option(help="Lowest grade that counts as relevant for Recall and MRR (Home Depot: 2.33).")
]
SampleOpt = Annotated[
    int | None, typer.Option(help="Evaluate a fixed random sample of this many judged queries.")
]
JsonFileOpt = Annotated[str | None, typer.Option("--json", help="Also write the report as JSON to FILE.")]


def _eval_inputs(queries: str, qrels: str, grade_offset: float, relevant_grade: float, sample: int | None,
                 seed: int) -> tuple[Any, Any]:  # fmt: skip
    from hybrid_search.evaluation.data import judged_queries, judgments, read_qrels, read_queries
    from hybrid_search.evaluation.data import sample as take_sample

    judged = judgments(read_qrels(qrels), grade_offset=grade_offset, relevant_grade=relevant_grade)
    kept, missing = judged_queries(read_queries(queries), judged)
    if missing:
        echo(f"{len(missing)} queries have no judgments in {qrels} and are left out (first: {missing[0]})")
    if not kept:
        raise HybridSearchError(f"no query of {queries} is judged in {qrels}")
    return take_sample(kept, sample, seed), judged


def _eval_settings() -> Settings:
    """The settings of a measuring command: hits' display fields from doc values, so no ``_mget`` of each page
    of 100 (latency = retrieval + fusion)."""
    return get_settings().model_copy(update={"search_display": "docvalues"})


def _write_json(path: str | None, data: dict[str, Any]) -> None:
    if path is not None:
        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        echo(f"wrote {path}")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HybridSearchError(f"--{what} must be comma-separated numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def evaluate(
    queries: QueriesOpt,
    qrels: QrelsOpt,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--methods",
            help="Methods, space-separated or repeated: bm25, text-knn, image-knn, colour-knn, native, "
            "linear[:<normaliser>[:<weights>]], rrf[:<k>[:<weights>]], tuned; @<window> sets the rank "
            "window. <weights>: a text-kNN share in [0, 1] or name=w,name=w.",
        ),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Method to compare against (default: the first).")
    ] = None,
    grade_offset: GradeOffsetOpt = 0.0,
    relevant_grade: RelevantGradeOpt = 1.0,
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
    sample: SampleOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the confidence intervals.")] = 2000,
    json_file: JsonFileOpt = None,
    plot: Annotated[str | None, typer.Option(help="Draw the methods side by side into FILE.png.")] = None,
) -> None:
    """Evaluate retrieval methods on the live index: nDCG@10 (and condensed), Recall@1/10/100, MRR@10, p50
    latency, and paired bootstrap 95% intervals of each method's difference from the baseline."""
    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation.console import eval_tables, progress_bar
    from hybrid_search.evaluation.data import fingerprint
    from hybrid_search.evaluation.methods import parse_methods
    from hybrid_search.evaluation.runner import evaluate as run_evaluation

    specs = parse_methods(methods or ["bm25 text-knn native linear rrf"])
    chosen, judged = _eval_inputs(queries, qrels, grade_offset, relevant_grade, sample, seed)
    settings = _eval_settings()
    target = index or settings.index_alias
    with create_engine(settings) as engine:
        fixed, tuned = compared_services(settings, engine)
        if any(s.tuned for s in specs):
            saved = engine.tuned_config(target) or {}
            fitted_on = (saved.get("tuning") or {}).get("queries_fingerprint")
            if fitted_on is not None and fitted_on == fingerprint([q.qid for q in chosen]):
                echo("note: tuned was fitted on these very queries; its figures here are in-sample (a fit). "
                     "hybrid-search tune prints held-out figures.")  # fmt: skip
        with progress_bar(err, "evaluating", len(chosen), "queries") as update:
            report = run_evaluation(
                fixed, tuned, target, chosen, judged, specs, baseline=baseline, samples=bootstrap, seed=seed,
                on_query=update,
            )  # fmt: skip
    for table in eval_tables(report):
        out.print(table)
    _write_json(json_file, report)
    if plot is not None:
        from hybrid_search.evaluation.plot import plot_methods

        plot_methods(report["methods"], plot, title=f"{report['queries']} queries on {target}")
        echo(f"wrote {plot}")


def tune(
    queries: QueriesOpt,
    qrels: QrelsOpt,
    grade_offset: GradeOffsetOpt = 0.0,
    relevant_grade: RelevantGradeOpt = 1.0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds over queries.")] = 5,
    metric: Annotated[
        str, typer.Option(help="Objective: ndcg@10, condensed_ndcg@10, mrr@10, recall@10 or recall@100.")
    ] = "ndcg@10",
    retrievers: Annotated[str, typer.Option(help="Retrievers whose weights are tuned.")] = "bm25,text_knn",
    fusions: Annotated[str, typer.Option(help="Fusion methods tried (linear, rrf).")] = "linear,rrf",
    normalisers: Annotated[str, typer.Option(help="Normalisers tried by linear.")] = "minmax,zscore,l2,dbsf",
    rank_constants: Annotated[str, typer.Option(help="Rank constants tried by rrf.")] = "5,10,20,40,60,100",
    windows: Annotated[str, typer.Option(help="Rank windows tried (candidates per retriever).")] = "100,200",
    steps: Annotated[
        int, typer.Option(help="Weight grid resolution: weights are multiples of 1/steps.")
    ] = 10,
    trials: Annotated[
        int | None, typer.Option(help="Random search: this many random configurations instead of the grid.")
    ] = None,
    verify: Annotated[
        int, typer.Option(help="Re-run this many (query, configuration) pairs live; they must match.")
    ] = 20,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Save the best configuration as the index's default.")
    ] = True,
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
    sample: SampleOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds, the sample and random search.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the confidence intervals.")] = 2000,
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive",
            help="Also fit query-adaptive fusion (bm25 and text_knn weights predicted per query, linear/minmax) "
            "with held-out figures against the best global weight, and save it as the index's default.",
        ),
    ] = False,
    learned: Annotated[
        bool,
        typer.Option(
            "--learned",
            help="Also fit learned fusion (a ranker over BM25, text kNN and title-match features of each "
            "candidate) with held-out figures against BM25 and the best global weight, and save it as the "
            "index's default fusion (`learned`).",
        ),
    ] = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Tune fusion (method, weights, normaliser, rank constant, rank window) with k-fold cross-validation,
    print held-out figures, and save the best configuration as the index's default (method `tuned`)."""
    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation import tuned as saved_config
    from hybrid_search.evaluation import tuning
    from hybrid_search.evaluation.console import progress_bar, tune_tables

    names = [r.replace("-", "_") for r in _names(retrievers)]
    window_list = [int(w) for w in _floats(windows, "windows")]
    options: dict[str, Any] = {
        "fusions": _names(fusions),
        "normalisers": _names(normalisers),
        "rank_constants": _floats(rank_constants, "rank-constants"),
        "windows": window_list,
    }
    if trials is None:
        configs = tuning.grid(names, steps=steps, **options)
    else:
        configs = tuning.random_configs(names, trials, seed=seed, **options)
    tuning.objective(metric, [], {}, frozenset())  # an unknown objective fails before any work
    chosen, judged = _eval_inputs(queries, qrels, grade_offset, relevant_grade, sample, seed)
    qids = [q.qid for q in chosen]
    settings = _eval_settings()
    target = index or settings.index_alias
    with create_engine(settings) as engine:
        service = search_service(settings, engine, use_tuned=False)
        with progress_bar(err, "fetching candidates", len(chosen), "queries") as update:
            candidates = tuning.fetch_candidates(service, target, chosen, names, window_list, on_query=update)
        with progress_bar(err, "fusing offline", len(configs), "configurations") as update:
            report = tuning.tune(
                candidates, configs, qids, judged, retrievers=names, folds=folds, metric=metric, seed=seed,
                samples=bootstrap, on_config=update,
            )  # fmt: skip
        report.verified = tuning.verify_live(service, target, chosen, candidates, configs, verify, seed=seed)
        data = report.to_dict()
        best = report.best_config
        window = best.rank_window
        fitted: dict[str, Any] = {}
        if adaptive:
            part, data["adaptive"] = saved_config.adaptive_config(
                chosen, candidates[window], judged, window=window, folds=folds, seed=seed
            )
            fitted.update(part)
        if learned:
            part, data["learned"] = saved_config.learned_config(
                engine, target, chosen, candidates[window], judged, window=window, folds=folds, seed=seed
            )
            fitted.update(part)
        if save:
            config = saved_config.tuned_config(report, folds=folds, fitted=fitted)
            data["saved_to"] = saved_config.save_tuned_config(engine, target, config)
    for table in tune_tables(data):
        out.print(table)
    out.print(
        f"best on all {len(qids)} queries: {best.label()}  {metric} {report.best_mean:.3f} (fit: in-sample, "
        f"optimistic); cross-validated estimate {report.cv_mean():.3f}. "
        f"{report.verified} live re-runs matched the offline fusion.",
        highlight=False,
    )
    if adaptive:
        figures = data["adaptive"]["held_out_ndcg@10"]
        diff, low, high = data["adaptive"]["adaptive_minus_global"]
        out.print(f"query-adaptive fusion, held out ({folds} folds): nDCG@10 {figures['adaptive (CV)']:.4f} vs "
                  f"{figures['global share (CV)']:.4f} with the best global weight ({diff:+.4f}, 95% CI "
                  f"{low:+.4f} to {high:+.4f})", highlight=False)  # fmt: skip
    if learned:
        figures = data["learned"]["held_out_ndcg@10"]
        diff, low, high = data["learned"]["learned_minus_bm25"]
        gdiff, glow, ghigh = data["learned"]["learned_minus_global"]
        out.print(f"learned fusion, held out ({folds} folds): nDCG@10 {figures['learned (CV)']:.4f} vs BM25 alone "
                  f"{figures['bm25 alone']:.4f} ({diff:+.4f}, 95% CI {low:+.4f} to {high:+.4f}) and the best global "
                  f"weight {figures['global share (CV)']:.4f} ({gdiff:+.4f}, 95% CI {glow:+.4f} to {ghigh:+.4f})",
                  highlight=False)  # fmt: skip
    if save:
        out.print(f"saved as the tuned configuration of {data['saved_to']} (method `tuned`, and the default "
                  "of every search there that does not say otherwise)", highlight=False)  # fmt: skip
    _write_json(json_file, data)


def untune(
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
) -> None:
    """Remove the index's tuned configuration: searches fall back to the settings' defaults."""
    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation.tuned import remove_tuned_config

    settings = get_settings()
    with create_engine(settings) as engine:
        name = remove_tuned_config(engine, index or settings.index_alias)
    out.print(f"removed the tuned configuration of {name}")


def finetune(
    catalogue: Annotated[
        str, typer.Argument(help="The catalogue whose product texts the judgments refer to.")
    ],
    queries: QueriesOpt,
    qrels: QrelsOpt,
    relevant_grade: RelevantGradeOpt = 1.0,
    negative_grade: Annotated[
        float | None,
        typer.Option(help="Judged products below this grade are hard negatives (default: --relevant-grade)."),
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="Text encoder to start from (default: the text_encoder setting).")
    ] = None,
    out_dir: Annotated[
        str, typer.Option("--out", help="Folder that receives the versioned model folder.")
    ] = "models",
    index: Annotated[
        str | None,
        typer.Option(
            help="Index whose BM25 top hits give hard negatives to queries with no judged negative "
            "(default: the alias; --no-mine to skip)."
        ),
    ] = None,
    mine: Annotated[bool, typer.Option("--mine/--no-mine", help="Mine BM25 hard negatives.")] = True,
    epochs: Annotated[int, typer.Option(help="Passes over the pairs.")] = 1,
    batch_size: Annotated[
        int, typer.Option(help="Pairs per step (more in-batch negatives when larger).")
    ] = 64,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 5e-5,
    max_length: Annotated[int, typer.Option(help="Tokens kept of each query and product text.")] = 32,
    per_query: Annotated[
        int | None, typer.Option(help="Keep at most this many pairs per query (its best-graded products).")
    ] = None,
    freeze_layers: Annotated[
        int, typer.Option(help="Lower transformer layers kept fixed (cheaper steps on a CPU).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the shuffles and the initialisation.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the text encoder on (query, relevant product) pairs from judgments or click logs, contrastively
    (in-batch and hard negatives), into a new versioned model folder; then reindex with it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hybrid_search.catalog import open_catalogue
    from hybrid_search.evaluation.console import progress_bar
    from hybrid_search.evaluation.data import read_qrels, read_queries
    from hybrid_search.evaluation.finetune import catalogue_texts, mine_negatives, train, training_pairs

    settings = get_settings()
    texts = catalogue_texts(open_catalogue(catalogue))
    asked = {q.qid: q.text for q in read_queries(queries) if q.text}
    grades = read_qrels(qrels)
    mined: dict[str, list[str]] | None = None
    if mine:
        from hybrid_search.engine import create_engine

        wanted = sorted(q for q in grades if q in asked)
        mining = progress_bar(err, "mining BM25 negatives", len(wanted), "queries")
        with create_engine(settings) as engine, mining as update:
            mined = mine_negatives(
                settings, engine, asked, wanted, index=index or settings.index_alias, on_query=update
            )
    pairs = training_pairs(asked, grades, texts, relevant_grade=relevant_grade, negative_grade=negative_grade,
                           mined=mined, per_query=per_query, seed=seed)  # fmt: skip
    if not pairs:
        raise HybridSearchError(
            f"no training pairs: no judged query of {qrels} has a product of {catalogue} graded >= {relevant_grade}"
        )
    echo(f"{len(pairs)} pairs from {len({p.qid for p in pairs})} queries "
         f"({sum(p.negative is not None for p in pairs)} with a hard negative)")  # fmt: skip
    columns = (TextColumn("[bold]fine-tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("steps, loss"),
               TextColumn("{task.fields[loss]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("fine-tuning", total=None, loss="-")
        report = train(pairs, base=base or settings.text_encoder, out_dir=Path(out_dir), epochs=epochs,
                       batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
                       freeze_layers=freeze_layers, device=settings.device, seed=seed,
                       progress=lambda step, steps, loss: bar.update(task, completed=step, total=steps,
                                                                     loss=f"{loss:.3f}"))  # fmt: skip
    summary = report.summary()
    summary["text_encoder"] = report.encoder_spec
    if as_json:
        print_json(summary)
        return
    out.print(f"wrote {report.folder} ({report.steps} steps, {summary['minutes_per_epoch']} min per epoch on "
              f"{report.device}, loss {summary['loss_per_epoch']})")  # fmt: skip
    out.print(
        "use it: give the workers, the API and this shell HYBRID_SEARCH_TEXT_ENCODER="
        f"{report.encoder_spec} and run `hybrid-search reindex {catalogue}` (new index version, alias swapped "
        "when done)"
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the ``hybrid-search`` app."""
    app.command("eval")(evaluate)
    app.command("tune")(tune)
    app.command("untune")(untune)
    app.command("finetune")(finetune)


__all__ = ["evaluate", "finetune", "register", "tune", "untune"]
