"""Several runs (games x seeds) aggregated as the Atari 100k papers report them.

Each run folder (`wmcli run`) gives one final score: the per-episode mean return of the last
evaluation in DIR/metrics.jsonl, for the game of its store (else its recipe) and the seed
`run.seed` of its recipe. Per game: the runs' mean return, its spread, the human-normalized
score (HNS) and DIAMOND's published mean beside it. Over games: mean, median, interquartile mean
(IQM) and optimality gap of the HNS, with stratified bootstrap confidence intervals, computed by
rliable (Agarwal et al., NeurIPS 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice"), an optional extra. rliable wants one (runs, games) matrix per algorithm:
games with more runs than others contribute their first runs (by seed) up to the smallest
count, and a note says so. Games without human scores (MinAtar) get per-game rows only.

`build_report` is `wmcli report`; `report_tables` lays its result out as tables, which
`to_markdown` and `to_latex` write as text; `plot_aggregates` draws the intervals to PNG.
See docs/report.md.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

from wmcli.base.atomic import atomic_path, check_writable
from wmcli.base.errors import WmcliError
from wmcli.base.progress import count
from wmcli.data.env import resolve_game
from wmcli.data.store import Store
from wmcli.outputs.evaluate import HUMAN_RANDOM, human_normalized
from wmcli.outputs.plot import read_jsonl

METRICS = ("median", "iqm", "mean", "optimality_gap")
"""The aggregates, in rliable's order of presentation."""
METRIC_NAMES = {"median": "Median", "iqm": "IQM", "mean": "Mean", "optimality_gap": "Optimality Gap"}
DEFAULT_LABEL = "wmcli"
INSTALL_HINT = "pip install 'wmcli[report]' (or pip install rliable 'pandas<3')"


@dataclass(frozen=True)
class RunScore:
    """The final score of one run: its game, seed and last evaluation."""

    run_dir: str
    label: str  # the group (algorithm, configuration) it is compared in
    game: str  # canonical name (EnvSpec.name): "Breakout", "minatar:Breakout"
    seed: int  # run.seed of its recipe (or the seed of a saved `wmcli eval --json`)
    return_mean: float  # mean return over the evaluation's episodes
    episodes: int
    epoch: int | None  # epoch of that evaluation (None: a saved `wmcli eval` result)
    env_steps: int | None
    final: bool  # whether it is the run's final evaluation (False: an unfinished run's last one)

    @property
    def hns(self) -> float | None:
        return human_normalized(self.game, self.return_mean)


# --------------------------------------------------------------------------------------------
# Reading runs.


class NotEvaluated(WmcliError):
    """A run folder with no evaluation yet (--allow-partial leaves it out)."""


def split_label(arg: str | Path) -> tuple[str, Path]:
    """A RUN argument: `DIR`, or `LABEL=DIR` to put the run in group LABEL (a path that exists
    is always taken whole, '=' and all)."""
    text = str(arg)
    if "=" in text and not Path(text).exists():
        label, path = text.split("=", 1)
        if label.strip() and "/" not in label:
            return label.strip(), Path(path)
    return DEFAULT_LABEL, Path(text)


def read_run(path: str | Path, label: str = DEFAULT_LABEL, allow_partial: bool = False) -> RunScore:
    """The final score of the run folder `path` (or of a file saved from `wmcli eval --json`).

    An unfinished run (its last evaluation is not the final one) is refused unless
    `allow_partial`; a run with no evaluation at all is always refused."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return _read_eval_json(path, label)
    if not path.is_dir():
        raise WmcliError(f"{path} not found; pass run folders written by `wmcli run` (or files of `wmcli eval --json`)")
    recipe_path, metrics_path, state_path = path / "recipe.yaml", path / "metrics.jsonl", path / "state.json"
    if not recipe_path.is_file() or not state_path.is_file():
        raise WmcliError(f"{path} is not a run folder (no recipe.yaml and state.json); pass folders written by `wmcli run`")
    try:
        recipe = yaml.safe_load(recipe_path.read_text()) or {}
        state = json.loads(state_path.read_text())
    except (OSError, ValueError) as e:
        raise WmcliError(f"{path}: unreadable run files ({e}); is it a folder written by `wmcli run`?") from None
    lines = read_jsonl(metrics_path) if metrics_path.is_file() else []
    evals = [x for x in lines if isinstance(x.get("eval"), dict) and x["eval"].get("return_mean") is not None]
    if not evals:
        raise NotEvaluated(f"run {path} has no evaluation yet (epoch {state.get('epoch_done', -1)} done); finish it with "
                         f"`wmcli run --resume {path}`")
    last = evals[-1]
    run_cfg = recipe.get("run", {})
    final_episodes = run_cfg.get("final_eval_episodes")
    # The last epoch always evaluates with final_eval_episodes, and its line is the run's last.
    final = (last is lines[-1] and last.get("epoch") == state.get("epoch_done")
             and last["eval"].get("episodes") == final_episodes)
    if not final and not allow_partial:
        raise WmcliError(f"run {path} is unfinished (its last evaluation, epoch {last.get('epoch')}, played "
                         f"{last['eval'].get('episodes')} episodes; the final one plays {final_episodes}); finish it with "
                         f"`wmcli run --resume {path}`, or pass --allow-partial to use its last evaluation")
    return RunScore(str(path), label, _run_game(path, recipe), int(run_cfg.get("seed", 0)), float(last["eval"]["return_mean"]),
                    int(last["eval"].get("episodes", 0)), last.get("epoch"), last.get("env_steps"), bool(final))


def _run_game(path: Path, recipe: dict) -> str:
    """The canonical name of the game a run played: its store's record, else its recipe's."""
    if Store.exists(path / "store"):
        return Store.open(path / "store").env["name"]
    game = recipe.get("env", {}).get("game")
    if not game:
        raise WmcliError(f"{path}: its recipe.yaml names no game (env.game) and it has no store")
    return resolve_game(game)[1]


def _read_eval_json(path: Path, label: str) -> RunScore:
    """A result of `wmcli eval AGENT --json` saved to a file: one run of its game."""
    try:
        r = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WmcliError(f"{path}: not a JSON file of `wmcli eval --json` ({e})") from None
    if not isinstance(r, dict) or r.get("kind") != "policy" or r.get("return_mean") is None:
        raise WmcliError(f"{path} is not a saved `wmcli eval AGENT --json` result (an agent's returns); "
                         f"pass run folders or such files")
    return RunScore(str(path), label, r["game"], int(r.get("seed") or 0), float(r["return_mean"]), int(r["episodes"]),
                    None, None, not r.get("interrupted", False))


def read_runs(args: list[str | Path], allow_partial: bool = False) -> tuple[list[RunScore], list[str]]:
    """The runs of `args` (`DIR` or `LABEL=DIR`, see split_label) and notes. With `allow_partial`,
    unfinished runs give their last evaluation and runs without one are left out (with a note)."""
    if not args:
        raise WmcliError("pass one or more run folders (wmcli run DIR)")
    runs, notes, seen = [], [], set()
    for arg in args:
        label, path = split_label(arg)
        if (label, path.resolve()) in seen:  # counted twice in one group; in two groups is fine
            raise WmcliError(f"{path} is given twice{'' if label == DEFAULT_LABEL else ' in group ' + label}; "
                             f"pass each run once")
        seen.add((label, path.resolve()))
        try:
            run = read_run(path, label, allow_partial)
        except NotEvaluated:
            if not allow_partial:
                raise
            notes.append(f"left out {path}: no evaluation yet")
            continue
        if not run.final:
            notes.append(f"{path} is unfinished: its last evaluation (epoch {run.epoch}, {run.episodes} episodes) is used")
        runs.append(run)
    if not runs:
        raise WmcliError("none of the runs has an evaluation yet; finish them with `wmcli run --resume DIR`")
    return runs, notes


# --------------------------------------------------------------------------------------------
# Per-game rows and score matrices.


def _labels(runs: list[RunScore]) -> list[str]:
    return list(dict.fromkeys(r.label for r in runs))


def _by_game(runs: list[RunScore], label: str) -> dict[str, list[RunScore]]:
    """The runs of one group by game (games in order of appearance), each sorted by seed."""
    out: dict[str, list[RunScore]] = {}
    for r in runs:
        if r.label == label:
            out.setdefault(r.game, []).append(r)
    return {g: sorted(rs, key=lambda r: (r.seed, r.run_dir)) for g, rs in out.items()}


def game_rows(runs: list[RunScore]) -> list[dict]:
    """Per group and game: runs, mean return with its sample sd and standard error, the HNS of that
    mean (None without human scores), and the reference scores (random, human, DIAMOND)."""
    rows = []
    for label in _labels(runs):
        for game, rs in _by_game(runs, label).items():
            rets = np.array([r.return_mean for r in rs], dtype=np.float64)
            sd = float(rets.std(ddof=1)) if len(rets) > 1 else None
            ref = HUMAN_RANDOM.get(game)
            mean = float(rets.mean())
            rows.append({
                "label": label, "game": game, "runs": len(rs), "seeds": [r.seed for r in rs],
                "return_mean": mean, "return_sd": sd, "return_sem": None if sd is None else sd / math.sqrt(len(rets)),
                "hns": human_normalized(game, mean),
                "random": ref.random if ref else None, "human": ref.human if ref else None,
                "diamond_return": ref.diamond if ref else None,
                "diamond_hns": human_normalized(game, ref.diamond) if ref and ref.diamond is not None else None,
            })
    return rows


@dataclass
class ScoreMatrix:
    """One group's human-normalized scores in rliable's layout: scores[run, game]."""

    label: str
    games: list[str]
    scores: np.ndarray  # (num_runs, num_games) HNS
    dropped: list[str]  # run folders left out to make the matrix rectangular


def score_matrices(runs: list[RunScore]) -> tuple[dict[str, ScoreMatrix], list[str]]:
    """One HNS matrix per group, over its games that have human scores, and notes. rliable needs
    the same number of runs for every game: a game with more keeps its first (lowest seeds)."""
    out, notes = {}, []
    for label in _labels(runs):
        by_game = _by_game(runs, label)
        games = [g for g in by_game if g in HUMAN_RANDOM]
        without = [g for g in by_game if g not in HUMAN_RANDOM]
        if without:
            notes.append(f"{_group(label)}{', '.join(without)}: no human/random scores, so no human-normalized aggregates "
                         f"(they need Atari 100k games); per-game returns only")
        if not games:
            continue
        n = min(len(by_game[g]) for g in games)
        dropped = [r.run_dir for g in games for r in by_game[g][n:]]
        if dropped:
            counts = ", ".join(f"{g} {len(by_game[g])}" for g in games)
            notes.append(f"{_group(label)}unequal runs per game ({counts}): the aggregates use the first {n} of each "
                         f"(lowest seeds), leaving out {', '.join(dropped)}")
        if n == 1:
            notes.append(f"{_group(label)}one run per game: the bootstrap has nothing to resample, so the intervals "
                         f"are the point estimates")
        scores = np.array([[by_game[g][i].hns for g in games] for i in range(n)], dtype=np.float64)  # (n, games)
        out[label] = ScoreMatrix(label, games, scores, dropped)
    if len({tuple(sorted(m.games)) for m in out.values()}) > 1:
        notes.append("the groups cover different games (" + "; ".join(f"{m.label}: {', '.join(m.games)}" for m in out.values())
                     + "): their aggregates are not comparable")
    return out, notes


def _group(label: str) -> str:
    return "" if label == DEFAULT_LABEL else f"{label}: "


# --------------------------------------------------------------------------------------------
# Aggregates with rliable.


def _rliable():
    """rliable's library and metrics modules, or one line on how to install them."""
    try:
        from rliable import library, metrics
    except ImportError:
        raise WmcliError(f"wmcli report needs rliable for the aggregates: {INSTALL_HINT}") from None
    except Exception as e:  # noqa: BLE001 - e.g. arch 7 under pandas 3: TypeError at import
        raise WmcliError(f"rliable failed to import ({type(e).__name__}: {e}); rliable 1.2 needs arch<8, which needs "
                         f"pandas<3: pip install 'pandas<3' (or {INSTALL_HINT})") from None
    return library, metrics


def aggregate_point(scores: np.ndarray) -> np.ndarray:
    """Median, IQM, mean and optimality gap (threshold 1: human level) of a (runs, games) matrix,
    by rliable's metrics."""
    _, metrics = _rliable()
    return np.array([metrics.aggregate_median(scores), metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores),
                     metrics.aggregate_optimality_gap(scores)])


def aggregates(matrices: dict[str, ScoreMatrix], reps: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Per group: the aggregates of its HNS matrix and their stratified bootstrap confidence
    intervals (percentile method, `reps` resamples of runs within each game; the same `seed` gives
    the same intervals, and a group's intervals do not depend on the other groups)."""
    if reps < 1:
        raise WmcliError(f"--reps must be at least 1, got {reps}")
    if not 0 < confidence < 1:
        raise WmcliError(f"--confidence must be between 0 and 1, got {confidence}")
    library, _ = _rliable()
    out = {}
    for label, m in matrices.items():
        with _global_numpy_seed(seed):
            point, interval = library.get_interval_estimates({label: m.scores}, aggregate_point, reps=reps,
                                                             confidence_interval_size=confidence)
        out[label] = {
            "games": m.games, "runs_per_game": int(m.scores.shape[0]), "dropped": m.dropped,
            "metrics": {name: {"estimate": float(point[label][i]),
                               "ci": [float(interval[label][0, i]), float(interval[label][1, i])]}
                        for i, name in enumerate(METRICS)},
        }
    return out


@contextlib.contextmanager
def _global_numpy_seed(seed: int):
    """NumPy's global generator seeded for the block, then put back as it was. rliable 1.2's
    StratifiedBootstrap draws its resamples with np.random.choice, ignoring the `random_state` it
    is given, so the global generator is what makes the intervals reproducible."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


# --------------------------------------------------------------------------------------------
# `wmcli report`.


def build_report(args: list[str | Path], reps: int = 2000, seed: int = 0, confidence: float = 0.95,
                 allow_partial: bool = False, plot: str | Path | None = None) -> dict:
    """`wmcli report`: read the runs of `args` (`DIR` or `LABEL=DIR`), tabulate them per game and
    aggregate each group's human-normalized scores with bootstrap intervals; with `plot`, draw the
    intervals to that PNG."""
    if plot is not None:
        if Path(plot).suffix.lower() != ".png":
            raise WmcliError(f"cannot draw to {plot}: --plot writes a .png file")
        check_writable(plot)
    runs, notes = read_runs(args, allow_partial)
    matrices, more = score_matrices(runs)
    notes += more
    result = {
        "runs": [asdict(r) | {"hns": r.hns} for r in runs],
        "games": game_rows(runs),
        "aggregates": aggregates(matrices, reps, seed, confidence) if matrices else {},
        "bootstrap": {"reps": reps, "seed": seed, "confidence": confidence, "method": "percentile (stratified over runs)",
                      "rliable": _version("rliable") if matrices else None},
        "notes": notes,
        "plot": None,
    }
    if plot is not None:
        if not matrices:
            raise WmcliError("--plot draws the human-normalized aggregates, which need Atari 100k games (these runs "
                             "have no human scores); drop --plot")
        result["plot"] = str(plot_aggregates(result, plot))
    return result


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def plot_aggregates(result: dict, out: str | Path) -> Path:
    """Each group's aggregates with their intervals, one panel per statistic (rliable's
    plot_interval_estimates), to a PNG written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from rliable import plot_utils
    except ImportError:
        raise WmcliError(f"--plot needs matplotlib and rliable: {INSTALL_HINT}") from None
    aggs = result["aggregates"]
    labels = list(aggs)
    point = {g: np.array([aggs[g]["metrics"][m]["estimate"] for m in METRICS]) for g in labels}
    interval = {g: np.array([[aggs[g]["metrics"][m]["ci"][k] for m in METRICS] for k in (0, 1)]) for g in labels}
    height = max(2.0, 0.6 * len(labels))  # inches: rliable's rows are sized for many algorithms
    fig, axes = plot_utils.plot_interval_estimates(point, interval, metric_names=[METRIC_NAMES[m] for m in METRICS],
                                                   algorithms=labels, xlabel="Human Normalized Score", max_ticks=3,
                                                   row_height=height / len(labels), xlabel_y_coordinate=-0.55 / height)
    for ax in axes:  # a little room either side of the widest interval
        lo, hi = ax.get_xlim()
        pad = 0.08 * (hi - lo) or 0.05
        ax.set_xlim(lo - pad, hi + pad)
    pct = round(100 * result["bootstrap"]["confidence"])
    fig.suptitle(f"{pct}% stratified bootstrap confidence intervals ({result['bootstrap']['reps']} resamples)",
                 fontsize="large", y=1 + 0.45 / height)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------
# Tables: (title, header, rows) of strings, for the console, Markdown and LaTeX.


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ret(x: float | None) -> str:
    return "-" if x is None else (f"{x:.1f}" if abs(x) >= 100 else f"{x:.2f}")


def report_tables(result: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """The per-game table (without the human-normalized columns when no game has human scores)
    and, when there are any, the aggregates table."""
    groups = list(dict.fromkeys(r["label"] for r in result["games"]))
    several = len(groups) > 1
    header = [*(["group"] if several else []), "game", "runs", "return ± sd", "HNS", "DIAMOND", "DIAMOND HNS"]
    rows = []
    for g in result["games"]:
        spread = f" ± {_ret(g['return_sd'])}" if g["return_sd"] is not None else ""
        rows.append([*([g["label"]] if several else []), g["game"], str(g["runs"]), _ret(g["return_mean"]) + spread,
                     _num(g["hns"]), _ret(g["diamond_return"]), _num(g["diamond_hns"])])
    if all(g["hns"] is None for g in result["games"]):  # MinAtar only: no reference columns
        header, rows = header[:-3], [r[:-3] for r in rows]
    tables = [("per game: final evaluations, mean over runs (DIAMOND: its published mean)",
               header, rows)]
    aggs = result["aggregates"]
    if aggs:
        pct = round(100 * result["bootstrap"]["confidence"])
        labels = list(aggs)
        head = ["HNS", *(f"{label} ({count(aggs[label]['runs_per_game'], 'run')} x {count(len(aggs[label]['games']), 'game')})"
                         for label in labels)]
        body = []
        for m in METRICS:
            cells = []
            for label in labels:
                v = aggs[label]["metrics"][m]
                cells.append(f"{_num(v['estimate'])} [{_num(v['ci'][0])}, {_num(v['ci'][1])}]")
            body.append([METRIC_NAMES[m], *cells])
        tables.append((f"human-normalized aggregates, {pct}% CIs (stratified bootstrap, {result['bootstrap']['reps']} "
                       f"resamples, seed {result['bootstrap']['seed']})", head, body))
    return tables


def to_markdown(result: dict) -> str:
    """The report as GitHub-flavoured Markdown tables, with the notes below them."""
    parts = []
    for title, header, rows in report_tables(result):
        lines = [f"**{title}**", "", _md_row(header), "|" + "|".join("---" for _ in header) + "|"]
        lines += [_md_row(r) for r in rows]
        parts.append("\n".join(lines))
    parts += [f"- {n}" for n in result["notes"]]
    return "\n\n".join(parts) + "\n"


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def to_latex(result: dict) -> str:
    """The report as LaTeX `table` environments (booktabs rules), notes as comments."""
    parts = []
    for title, header, rows in report_tables(result):
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(title)}}}",
                 rf"\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", r"\toprule",
                 " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        parts.append("\n".join(lines))
    parts += [f"% {n}" for n in result["notes"]]
    return "\n\n".join(parts) + "\n"
