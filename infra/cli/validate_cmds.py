"""``qmroct validate``: the phantom sweep and the checks on the real samples."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click


def default_samples() -> Path | None:
    """$QMROCT_SAMPLES, else ../shared/data/oct-samples beside the repository."""
    env = os.environ.get("QMROCT_SAMPLES")
    repo = Path(__file__).resolve().parents[2]
    candidates = [Path(env)] if env else []
    candidates += [repo.parent / "shared" / "data" / "oct-samples"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


AUC_CI_METHOD = (
    "Clopper-Pearson on min(n_clean, n_defect) trials (Birnbaum-Klose variance bound; "
    "distribution-free, informative at AUC 1); auc_ci95_bootstrap: stratified percentile "
    "bootstrap"
)


class Progress:
    """``progress(done, total)`` for long runs: a bar redrawn in place on a terminal, plain
    lines (every 2% and at the end) when stderr goes to a log or a pipe."""

    def __init__(self, what: str, t0: float, stream=None) -> None:
        import sys

        self.what, self.t0 = what, t0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        spent = time.time() - self.t0
        eta = spent / done * (total - done) if done else 0.0
        tail = f"{done}/{total} {spent / 60:.1f} min, about {eta / 60:.1f} min left"
        if self.tty:
            width = 30
            bar = "#" * (width * done // max(total, 1))
            end = "\n" if done == total else ""
            self.stream.write(f"\r{self.what} [{bar:<{width}}] {tail}\033[K{end}")
            self.stream.flush()
            return
        step = max(1, total // 50)
        if done == total or done // step != self.last:
            self.last = done // step
            self.stream.write(f"{self.what} {tail}\n")
            self.stream.flush()


def _validate(
    as_json: bool,
    quick: bool,
    samples: Path | None,
    seeds: int | None,
    phantoms: bool,
    fail_only: bool = False,
    workers: int | None = None,
) -> None:
    from qmroct.measures.real_samples import check_samples
    from qmroct.measures.validation import validate_phantoms

    t0 = time.time()
    progress = Progress("phantoms", t0)
    n_seeds = seeds or (6 if quick else 16)
    # --fail-only: clean eyes and each defect at its fail severity, no cross-talk: the AUCs in
    # a quarter of the time (no response curve beyond those two points).
    kw = {"severities": (0.0,), "cross_talk": False} if fail_only else {}
    result, repeats = (
        validate_phantoms(
            quick=quick,
            seeds=seeds,
            retest_eyes=2 if quick else 6,
            workers=workers,
            progress=progress,
            **kw,
        )
        if phantoms
        else ({}, {})
    )
    root = samples or default_samples()
    real = None
    if root:
        real = check_samples(
            root, lambda rel: click.echo(f"real sample {rel} ({time.time() - t0:.0f} s)", err=True)
        )
    if as_json:
        measures = {name: mv.model_dump(mode="json") for name, mv in result.items()}
        for pattern, rows in repeats.items():
            for row in rows:
                entry = measures.setdefault(row.graded_by.partition(".")[0], {})
                entry.setdefault("phantom_test_retest", []).append(
                    {"pattern": pattern, **row.model_dump(mode="json")}
                )
        doc = {
            "phantom_seeds": n_seeds if phantoms else 0,
            "auc_ci95_method": AUC_CI_METHOD,
            "sweep": (
                ("quick" if quick else "fail-only" if fail_only else "full")
                if phantoms
                else "skipped"
            ),
            "measures": measures,
            "real_samples": real.model_dump(mode="json") if real else None,
            "seconds": round(time.time() - t0, 1),
        }
        click.echo(json.dumps(doc, indent=2))
        return
    if phantoms:
        _print_sweep(
            result, repeats, "quick" if quick else "fail-only" if fail_only else "full", n_seeds
        )
    if real is None:
        click.echo("\nreal samples: no samples folder (set QMROCT_SAMPLES or --samples)")
    else:
        _print_real(real)
    click.echo(f"\n({time.time() - t0:.0f} s)")


def _print_sweep(result: dict, repeats: dict, kind: str, n_seeds: int) -> None:
    from qmroct.measures.validation import GRADER_SEVERITY

    click.echo(
        f"phantom sweep ({kind}, {n_seeds} eyes per severity); every "
        "seed a different healthy eye; AUC of clean against the severity a grader fails, 95% "
        f"interval: {AUC_CI_METHOD}"
    )
    click.echo(
        f"{'measure':16} {'AUC':>6} {'95% CI':>13} {'bootstrap':>13} {'fail sev':>8} "
        f"{'monotonic':>9}"
    )
    for name, mv in result.items():
        if mv.auc is None:
            click.echo(f"{name:16} {'n/a':>6}  {mv.note}")
            continue
        lo, hi = mv.auc_ci95 or (float("nan"), float("nan"))
        b_lo, b_hi = mv.auc_ci95_bootstrap or (float("nan"), float("nan"))
        click.echo(
            f"{name:16} {mv.auc:6.3f} [{lo:.2f}, {hi:.2f}] [{b_lo:.2f}, {b_hi:.2f}] "
            f"{mv.fail_severity:8g} {str(mv.monotonic):>9}"
        )
        for p in mv.probes:
            curve = " ".join(
                f"{s:g}:{v:.3g}" for s, v in zip(p["severities"], p["response"], strict=True)
            )
            a_lo, a_hi = p["auc_ci95"]
            b_lo, b_hi = p["auc_ci95_bootstrap"]
            click.echo(
                f"    {p['defect']:15} {p['value']} ({p['direction']}): {curve}\n"
                f"    {'':15} fail at {p['fail_severity']:g}: AUC {p['auc']:.3f} "
                f"[{a_lo:.3f}, {a_hi:.3f}] (bootstrap [{b_lo:.2f}, {b_hi:.2f}]), "
                f"n {p['n_clean']}+{p['n_defect']}; "
                f"{GRADER_SEVERITY[p['defect']].why}"
            )
    click.echo("\ncross-talk: fraction flagged (warn/fail) at each defect's fail severity")
    for name, mv in result.items():
        if mv.clean_flag_rate is None:
            click.echo(f"  {name:16} not run (--fail-only)")
            continue
        hits = {d: r for d, r in mv.cross_talk.items() if r - (mv.clean_flag_rate or 0) >= 0.5}
        shown = ", ".join(f"{d} {r:.2f}" for d, r in hits.items()) or "none"
        click.echo(f"  {name:16} clean {mv.clean_flag_rate:.2f}; flagged: {shown}")
        for d, why in mv.expected_cross_talk.items():
            click.echo(f"      {d}: expected ({why})")
        if mv.unexpected_cross_talk:
            click.echo(f"      UNEXPECTED: {', '.join(mv.unexpected_cross_talk)}")
    click.echo(
        "\nphantom test-retest: repeat scans of the same phantom eyes (new speckle, noise); "
        "'floor': both values under the warn threshold, difference taken over it"
    )
    for pattern, rows in repeats.items():
        for row in rows:
            judged = {True: "ok", False: "OVER", None: "n/a"}[row.within_limit]
            click.echo(
                f"  {pattern:6} {row.letter} {row.graded_by:40} max {row.max_relative_difference:.1%}"
                f"  median {row.median_relative_difference:.1%}  |a-b| "
                f"{row.max_abs_difference:.3g}{'  floor' if row.noise_floor else ''}  "
                f"({row.eyes} eyes) {judged}"
            )
            if row.note:
                click.echo(f"         {row.note}")


def _print_real(real) -> None:
    from qmroct.measures.real_samples import RETEST_LIMIT

    click.echo(f"\nreal samples in {real.samples}: {len(real.scans)} acquisitions graded")
    for s in real.skipped:
        click.echo(f"  skipped: {s}")
    click.echo(
        f"\ntest-retest on real repeat pairs (limit {RETEST_LIMIT:.0%} on every graded value)"
    )
    if not real.repeats:
        click.echo(f"  {real.repeat_note}")
    for p in real.repeats:
        click.echo(f"  {p.a} / {p.b}: {p.why}")
        for letter, rows in p.letters.items():
            va, vb = p.verdicts[letter]
            for r in rows:
                rd = "n/a" if r.relative_difference is None else f"{r.relative_difference:.1%}"
                mark = "" if r.within_limit else "  OVER THE LIMIT"
                click.echo(
                    f"    {letter} ({va}/{vb}) {r.value:44} {_num(r.a):>10} {_num(r.b):>10} "
                    f"{rd:>7}{mark}"
                )
        worst = "n/a" if p.worst is None else f"{p.worst:.1%}"
        click.echo(f"    largest difference {worst}: {'PASS' if p.passed else 'FAIL'}")
    click.echo("\nS ordering: the value that grades S against the device's own quality")
    for o in real.ordering:
        click.echo(f"  [{o.kind}] ties below {o.margin_why}")
        click.echo(f"    {'scan':40} {'device':>8} {o.value:>20}  others")
        for r in o.rows:
            others = " ".join(
                f"{k}={_num(r[k])}" for k in r if k not in ("scan", "device_quality", o.value)
            )
            click.echo(
                f"    {r['scan']:40} {r['device_quality']:8.2f} {r[o.value]:20.2f}  {others}"
            )
        conc = "n/a" if o.concordance is None else f"{o.concordance:.2f}"
        click.echo(
            f"    pairs: {o.concordant} concordant, {o.discordant} discordant, {o.ties} ties; "
            f"concordance {conc}"
        )
    click.echo(f"\nleave-one-out: {real.leave_one_out_note}")
    for lo in real.leave_one_out:
        orders = ", ".join(
            f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in lo.ordering_without.items()
        )
        retest = (
            "none"
            if lo.retest_passed_without is None
            else ("pass" if lo.retest_passed_without else "FAIL")
        )
        click.echo(
            f"  without {lo.scan}: margin {lo.margin_without:.2g}, S concordance "
            f"{orders or 'n/a'}, repeat pairs {lo.retest_pairs_without} ({retest})"
        )
        if lo.letters:
            click.echo(f"    {lo.scan}'s own letters (the same with or without the others):")
        for letter, line in lo.letters.items():
            click.echo(f"      {letter}: {line}")


def _num(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) else "-"


def register(cli: click.Group, groups: dict[str, click.Group]) -> None:
    """Add ``qmroct validate`` to the command tree."""

    @cli.command("validate")
    @click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
    @click.option(
        "--quick", is_flag=True, help="6 seeds, severities notice/fail/1 (the run tests use)"
    )
    @click.option("--seeds", type=int, help="phantom eyes per severity (default 6 quick, 16 full)")
    @click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="processes grading phantoms (default: one per core; 1 with --quick); any number "
        "gives the same result",
    )
    @click.option(
        "--samples",
        type=click.Path(file_okay=False, path_type=Path),
        help="real OCT samples folder (default: $QMROCT_SAMPLES or ../shared/data/oct-samples)",
    )
    @click.option(
        "--real-only", is_flag=True, help="only the real samples (no phantom sweep): seconds"
    )
    @click.option(
        "--fail-only",
        is_flag=True,
        help="phantoms only clean and at each defect's fail severity, no cross-talk: the AUCs "
        "in a quarter of the time",
    )
    def validate_cmd(
        as_json: bool,
        quick: bool,
        samples: Path | None,
        seeds: int | None,
        real_only: bool,
        fail_only: bool,
        workers: int | None,
    ) -> None:
        """Validate the measures.

        Phantoms: a defect sweep over healthy eyes of natural anatomical variation (response,
        AUC with 95% CI at the severity a grader fails, cross-talk, phantom test-retest).
        Real samples: every real acquisition graded, with the value that graded each letter;
        repeat pairs found by what the files say and their test-retest (every graded value
        under 10%); the value that grades S against the device's quality; leave-one-out.
        Progress goes to stderr (a bar on a terminal, lines in a log). Phantoms are graded
        by one process per core; the full sweep (about 1,200 phantoms) takes tens of minutes
        on two cores.
        """
        _validate(
            as_json,
            quick,
            samples,
            seeds,
            phantoms=not real_only,
            fail_only=fail_only,
            workers=workers,
        )
