"""Synthesis constraints a vendor checks, and their repair, on DnaChisel specifications.

A design is ordered inside a construct (``prefix + design + suffix``, the cloning adapters). Every check runs on the
whole construct, so a site that spans an adapter junction is found too:

=====================  ==========================================================  ====================
flag                   what it means (default)                                     DnaChisel spec
=====================  ==========================================================  ====================
``gc_low@S-E``         a ``gc_window``-bp window with GC below ``gc_min`` (50 bp,   ``EnforceGCContent``
``gc_high@S-E``        0.25) / above ``gc_max`` (0.65)
``homopolymer@S-E``    a run of one base longer than ``max_homopolymer`` (10 bp)    ``AvoidPattern``
``NAME@S-E+`` / ``-``  the site of enzyme ``NAME`` (BsaI, BsmBI; sites and          ``AvoidPattern``
                       degenerate bases from Biopython's ``Bio.Restriction``) on
                       the forward / reverse strand
``pattern:P@S-E+``     a user pattern ``P`` (IUPAC letters), either strand (none)   ``AvoidPattern``
``repeat@S-E``         a ``repeat_kmer``-mer occurring twice, either strand (off)   ``UniquifyAllKmers``
``hairpin@S-E``        an inverted repeat with a ``hairpin_stem``-bp stem (off)      ``AvoidHairpins``
=====================  ==========================================================  ====================

``S-E`` is the 0-based, end-exclusive span in construct coordinates (the design's own when there are no adapters).
:func:`check_designs` gives every design's flags; :func:`repair_design` resolves them with DnaChisel's solver,
changing as few bases as it can and never the adapters; :func:`repair_designs` repairs a design table and
re-scores the repaired designs with the oracles (``simpo-bio export --repair``).

The fast tensor checks the fine-tuning loop needs (:func:`simpo_bio.dna.data.composition.gc_fraction`,
:func:`~simpo_bio.dna.data.composition.longest_homopolymer`, :func:`~simpo_bio.dna.data.composition.windowed_gc`) stay in
:mod:`simpo_bio.dna.data.composition`; ``tests/dna/test_synthesis.py`` checks that they agree with these.

Imports: numpy, pandas, torch, dnachisel, Biopython, :mod:`simpo_bio.dna.data.alphabet`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from simpo_bio.dna.data.alphabet import decode, encode

__all__ = ["SynthesisConstraints", "Violation", "check_designs", "flags_column", "repair_design", "repair_designs",
           "RepairResult", "constraint_summary"]

_IUPAC = set("ACGTRYSWKMBDHVN")


def _enzyme_sites() -> dict[str, str]:
    from Bio.Restriction.Restriction_Dictionary import rest_dict

    return {name: d["site"] for name, d in rest_dict.items()}


@dataclass(frozen=True)
class SynthesisConstraints:
    """What a design must satisfy to be ordered (checked on ``prefix + design + suffix``).

    Args:
        gc_min, gc_max: allowed GC fraction of every ``gc_window``-bp window (inclusive; vendors: 0.25-0.65).
        gc_window: window of the GC check, bp (vendors check 50-bp windows).
        max_homopolymer: longest allowed run of one base, bp.
        enzymes: restriction enzymes whose sites must not occur on either strand, by name in Biopython's
            ``Bio.Restriction`` (default the Golden Gate enzymes BsaI and BsmBI, which would cut inside the insert).
        patterns: further sites to avoid on either strand, IUPAC letters (``N``, ``R``, ``W``, ... allowed).
        repeat_kmer: 0 (off), or ``k``: no ``k``-mer may occur twice in the construct, either strand.
        hairpin_stem: 0 (off), or the stem length of an inverted repeat to avoid, bp (within ``hairpin_window``).
        hairpin_window: how far apart the two arms of a hairpin may be, bp.
        prefix, suffix: 5' / 3' adapters (``ACGT``); checked with the design inside them, never changed by repair.

    Raises:
        ValueError: ``gc_min > gc_max`` or a bound outside ``[0, 1]``, ``gc_window < 2``, ``max_homopolymer < 1``,
            an enzyme name not in ``Bio.Restriction`` (with the closest names), a pattern with letters outside
            IUPAC, a negative ``repeat_kmer`` / ``hairpin_stem``, or adapters with letters outside ``ACGT``.
    """

    gc_min: float = 0.25
    gc_max: float = 0.65
    gc_window: int = 50
    max_homopolymer: int = 10
    enzymes: tuple[str, ...] = ("BsaI", "BsmBI")
    patterns: tuple[str, ...] = ()
    repeat_kmer: int = 0
    hairpin_stem: int = 0
    hairpin_window: int = 200
    prefix: str = ""
    suffix: str = ""
    _sites: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 <= self.gc_min <= self.gc_max <= 1.0):
            raise ValueError(f"GC bounds must satisfy 0 <= gc_min <= gc_max <= 1, got gc_min={self.gc_min}, "
                             f"gc_max={self.gc_max}")
        if int(self.gc_window) < 2:
            raise ValueError(f"gc_window must be >= 2 bp, got {self.gc_window}")
        if int(self.max_homopolymer) < 1:
            raise ValueError(f"max_homopolymer must be >= 1 bp, got {self.max_homopolymer}")
        if int(self.repeat_kmer) < 0 or int(self.hairpin_stem) < 0:
            raise ValueError(f"repeat_kmer and hairpin_stem must be >= 0 (0 = off), got {self.repeat_kmer}, "
                             f"{self.hairpin_stem}")
        object.__setattr__(self, "enzymes", tuple(self.enzymes))
        object.__setattr__(self, "patterns", tuple(p.upper() for p in self.patterns))
        known = _enzyme_sites()
        sites = {}
        for name in self.enzymes:
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=3)
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise ValueError(f"unknown enzyme {name!r}: not in Biopython's Bio.Restriction{hint}")
            sites[name] = known[name]
        object.__setattr__(self, "_sites", sites)
        for p in self.patterns:
            if not p or set(p) - _IUPAC:
                raise ValueError(f"pattern {p!r} must be a non-empty string of IUPAC letters (ACGTRYSWKMBDHVN)")
        for name in ("prefix", "suffix"):
            value = getattr(self, name)
            if set(value.upper()) - set("ACGT"):
                raise ValueError(f"{name} {value!r} must be ACGT only")

    @property
    def sites(self) -> dict[str, str]:
        """``{enzyme: site}`` as ``Bio.Restriction`` records it (IUPAC, top strand)."""
        return dict(self._sites)

    def construct(self, design: str) -> str:
        """``prefix + design + suffix``, upper case."""
        return (self.prefix + design + self.suffix).upper()

    def fitted(self, length: int) -> SynthesisConstraints:
        """These constraints with the GC window shortened to a ``length``-bp design's construct where it is longer
        (the automatic flags of every export use this; an explicit too-long window is an error instead)."""
        n = len(self.prefix) + int(length) + len(self.suffix)
        if self.gc_window <= n:
            return self
        kw = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "_sites"}
        return SynthesisConstraints(**{**kw, "gc_window": max(2, n)})

    def check_length(self, design: str, label: str = "design") -> None:
        """Raise ``ValueError`` (one line) when the construct is shorter than the GC window."""
        n = len(self.prefix) + len(design) + len(self.suffix)
        if self.gc_window > n:
            raise ValueError(f"gc_window {self.gc_window} bp is longer than {label} ({n} bp with its adapters); "
                             f"use --gc-window <= {n}")

    def specifications(self) -> list[tuple[str, object]]:
        """``[(label, DnaChisel specification), ...]``: the constraints as DnaChisel builds them."""
        import dnachisel as dc

        specs: list[tuple[str, object]] = [
            ("gc", dc.EnforceGCContent(mini=self.gc_min, maxi=self.gc_max, window=int(self.gc_window)))]
        # forward strand only: the four bases cover both strands (a G run is a C run on the other)
        specs += [("homopolymer", dc.AvoidPattern(dc.HomopolymerPattern(b, int(self.max_homopolymer) + 1), strand=1))
                  for b in "ACGT"]
        specs += [(name, dc.AvoidPattern(dc.DnaNotationPattern(site, name=name))) for name, site in self._sites.items()]
        specs += [(f"pattern:{p}", dc.AvoidPattern(dc.DnaNotationPattern(p))) for p in self.patterns]
        if self.repeat_kmer:
            specs.append(("repeat", dc.UniquifyAllKmers(int(self.repeat_kmer), include_reverse_complement=True)))
        if self.hairpin_stem:
            specs.append(("hairpin", dc.AvoidHairpins(stem_size=int(self.hairpin_stem),
                                                      hairpin_window=int(self.hairpin_window))))
        return specs

    def describe(self) -> list[tuple[str, str]]:
        """``[(flag label, what it checks), ...]``, one line per constraint (for the README / a report)."""
        lines = [("gc_low / gc_high", f"every {self.gc_window}-bp window at GC {self.gc_min:g}-{self.gc_max:g}"),
                 ("homopolymer", f"no run of one base longer than {self.max_homopolymer} bp")]
        lines += [(n, f"no {n} site ({s}, Bio.Restriction) on either strand") for n, s in self._sites.items()]
        lines += [(f"pattern:{p}", f"no {p} on either strand") for p in self.patterns]
        if self.repeat_kmer:
            lines.append(("repeat", f"no {self.repeat_kmer}-mer twice, either strand"))
        if self.hairpin_stem:
            lines.append(("hairpin", f"no {self.hairpin_stem}-bp hairpin stem within {self.hairpin_window} bp"))
        if self.prefix or self.suffix:
            lines.append(("(adapters)", f"checked inside {self.prefix or '-'} ... {self.suffix or '-'}"))
        return lines


@dataclass(frozen=True)
class Violation:
    """One breach of a constraint: ``constraint`` at ``[start, end)`` of the construct, on ``strand`` (+1, -1, 0)."""

    constraint: str
    start: int
    end: int
    strand: int = 0

    def __str__(self) -> str:
        tail = {1: "+", -1: "-"}.get(self.strand, "")
        return f"{self.constraint}@{self.start}-{self.end}{tail}"


def _merge(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge overlapping ``(start, end, strand)`` spans of one strand (a 14-bp run is one homopolymer, not four)."""
    out: list[tuple[int, int, int]] = []
    for s, e, st in sorted(spans, key=lambda t: (t[2], t[0])):
        if out and out[-1][2] == st and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e), st)
        else:
            out.append((s, e, st))
    return sorted(out, key=lambda t: (t[0], t[2]))


def _gc_breaches(construct: str, location, c: SynthesisConstraints) -> list[Violation]:
    """Split a failing GC region into ``gc_low`` / ``gc_high`` spans of windows."""
    s, e, w = int(location.start), int(location.end), int(c.gc_window)
    g = np.frombuffer(construct[s:e].encode(), dtype=np.uint8)
    gc = np.isin(g, (ord("G"), ord("C"))).astype(float)
    if len(gc) < w:
        return [Violation("gc_low" if gc.mean() < c.gc_min else "gc_high", s, e)]
    csum = np.concatenate([[0.0], np.cumsum(gc)])
    frac = (csum[w:] - csum[:-w]) / w
    out = []
    for name, bad in (("gc_low", frac < c.gc_min - 1e-9), ("gc_high", frac > c.gc_max + 1e-9)):
        idx = np.flatnonzero(bad)
        if idx.size:
            runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
            out += [Violation(name, s + int(r[0]), s + int(r[-1]) + w) for r in runs]
    return out or [Violation("gc", s, e)]


def _violations(problem, labels: list[str], c: SynthesisConstraints) -> list[Violation]:
    out: list[Violation] = []
    for label, ev in zip(labels, problem.constraints_evaluations(autopass=False).evaluations, strict=True):
        if ev.passes:
            continue
        if label == "gc":
            out += [v for loc in ev.locations for v in _gc_breaches(problem.sequence, loc, c)]
        else:
            out += [Violation(label, int(loc.start), int(loc.end), 0 if label == "homopolymer" else int(loc.strand or 0))
                    for loc in ev.locations]
    merged: list[Violation] = []
    for name in dict.fromkeys(v.constraint for v in out):  # overlapping windows / runs of one constraint: one span
        spans = _merge([(v.start, v.end, v.strand) for v in out if v.constraint == name])
        merged += [Violation(name, s, e, st) for s, e, st in spans]
    return sorted(merged, key=lambda v: (v.start, v.constraint))


def _as_strings(sequences: Sequence[str] | torch.Tensor) -> list[str]:
    return decode(sequences) if isinstance(sequences, torch.Tensor) else [str(s) for s in sequences]


def check_designs(sequences: Sequence[str] | torch.Tensor, constraints: SynthesisConstraints | None = None,
                  ) -> list[list[Violation]]:
    """Every constraint breach of every design (empty list = ready to order).

    Args:
        sequences: design strings (``ACGT``, either case) or ``[B, L]`` tokens.
        constraints: the constraints (default :class:`SynthesisConstraints`).

    Returns:
        One list of :class:`Violation` per design, in input order, sorted by position.

    Raises:
        ValueError: a design (named by its index) with letters outside ``ACGT``, or whose construct is shorter
            than the GC window.
    """
    import dnachisel as dc

    c = constraints or SynthesisConstraints()
    specs = c.specifications()
    labels = [label for label, _ in specs]
    out = []
    for i, s in enumerate(_as_strings(sequences)):
        if set(s.upper()) - set("ACGT"):
            bad = next(j for j, ch in enumerate(s.upper()) if ch not in "ACGT")
            raise ValueError(f"design {i}: letter {s[bad]!r} at position {bad} is not ACGT")
        c.check_length(s, f"design {i}")
        problem = dc.DnaOptimizationProblem(c.construct(s), constraints=[sp for _, sp in specs], logger=None)
        out.append(_violations(problem, labels, c))
    return out


def flags_column(sequences: Sequence[str] | torch.Tensor, constraints: SynthesisConstraints | None = None
                 ) -> list[str]:
    """:func:`check_designs` as one string per design: ``;``-separated flags, ``none`` when clean."""
    return [";".join(map(str, v)) if v else "none" for v in check_designs(sequences, constraints)]


def constraint_summary(flags: Sequence[str], constraints: SynthesisConstraints | None = None) -> pd.DataFrame:
    """How many designs each constraint touches: one row per constraint of :meth:`SynthesisConstraints.describe`.

    Args:
        flags: the ``flags`` column (:func:`flags_column`).

    Returns:
        ``constraint, checks, designs`` (designs with at least one breach of it).
    """
    c = constraints or SynthesisConstraints()
    names = [set(f.split("@")[0] for f in fl.split(";")) if fl != "none" else set() for fl in flags]
    rows = []
    for label, what in c.describe():
        keys = set(label.split(" / ")) if label != "(adapters)" else set()
        rows.append({"constraint": label, "checks": what, "designs": sum(bool(n & keys) for n in names)})
    rows.append({"constraint": "any", "checks": "at least one of the above", "designs": sum(bool(n) for n in names)})
    return pd.DataFrame(rows)


@dataclass
class RepairResult:
    """One design's repair: the new design, where it changed, and what still fails (empty when it passes)."""

    sequence: str
    changed: list[int]
    remaining: list[Violation]

    @property
    def passes(self) -> bool:
        return not self.remaining


def repair_design(design: str, constraints: SynthesisConstraints | None = None, *, seed: int = 0) -> RepairResult:
    """Resolve a design's breaches with DnaChisel's solver, changing as few bases as it can.

    The adapters are frozen (``AvoidChanges``); the solver mutates only the breached regions
    (``resolve_constraints``), then reverts every change the constraints do not need (``optimize`` with the
    ``AvoidChanges`` objective). Deterministic for a given ``seed`` (numpy's global state is restored).

    Args:
        design: the design (``ACGT``), without adapters.
        constraints: default :class:`SynthesisConstraints`.
        seed: seed of DnaChisel's random mutations.

    Returns:
        :class:`RepairResult`: the repaired design (adapters stripped), the 0-based positions that changed in the
        design, and the breaches left (empty = passes; the design is returned unchanged when no solution exists).

    Raises:
        ValueError: as :func:`check_designs`.
    """
    import dnachisel as dc

    c = constraints or SynthesisConstraints()
    check_designs([design], c)  # validates the letters and the length
    specs = c.specifications()
    labels = [label for label, _ in specs]
    n_pre, n = len(c.prefix), len(design)
    frozen = [dc.AvoidChanges(location=(0, n_pre))] if n_pre else []
    if c.suffix:
        frozen.append(dc.AvoidChanges(location=(n_pre + n, n_pre + n + len(c.suffix))))
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        problem = dc.DnaOptimizationProblem(c.construct(design), constraints=[sp for _, sp in specs] + frozen,
                                            objectives=[dc.AvoidChanges()], logger=None)
        try:
            problem.resolve_constraints()
            problem.optimize()
            remaining = _violations(problem, labels + ["frozen"] * len(frozen), c)
        except dc.NoSolutionError:  # unsolvable (e.g. a site inside a frozen adapter): the design as it was
            problem = dc.DnaOptimizationProblem(c.construct(design), constraints=[sp for _, sp in specs],
                                                logger=None)
            remaining = _violations(problem, labels, c)
    finally:
        np.random.set_state(state)
    new = problem.sequence[n_pre:n_pre + n]
    changed = [i for i, (a, b) in enumerate(zip(design.upper(), new, strict=True)) if a != b]
    return RepairResult(new, changed, remaining)


def repair_designs(table: pd.DataFrame, constraints: SynthesisConstraints | None = None, *,
                   score: Callable[[torch.Tensor], torch.Tensor],
                   eval_score: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   margin: float = 0.5, seed: int = 0, flags: Sequence[str] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Repair every flagged design of a design table, re-score it, keep it if it lost less than ``margin``.

    Args:
        table: a design table with ``id`` and ``sequence`` columns (``designs.csv``); ``reward`` /
            ``eval_reward`` columns are updated for the repaired designs.
        constraints: default :class:`SynthesisConstraints`.
        score: the fine-tuning oracle's reward, tokens ``[B, L]`` -> ``[B]`` (HepG2 log-odds).
        eval_score: the evaluation oracle's reward (the same units), or ``None``.
        margin: the largest fine-tuning-oracle drop a repaired design may have, log-odds.
        seed: DnaChisel's seed (:func:`repair_design`).
        flags: the table's :func:`flags_column` under ``constraints`` when the caller has it (not computed again).

    Returns:
        ``(kept, report)``: ``kept`` holds the designs that pass every constraint (clean ones as they were,
        accepted repairs with their new sequence, rewards and ``flags == "none"``), in the table's order, with a
        ``repair`` column (``clean`` / ``repaired``) and ``bases_changed``; ``report`` has one row per flagged
        design: ``id, status, flags_before, bases_changed, positions, reward_before, reward_after,
        reward_change, eval_reward_before, eval_reward_after`` with ``status`` ``repaired``,
        ``rejected: reward`` (dropped more than ``margin``) or ``rejected: unsolved`` (flags left).

    Raises:
        ValueError: a table without ``sequence`` / ``id``, or ``margin < 0``.
    """
    for col in ("id", "sequence"):
        if col not in table:
            raise ValueError(f"the design table has no {col!r} column; columns: {', '.join(map(str, table.columns))}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0 log-odds, got {margin}")
    c = constraints or SynthesisConstraints()
    seqs = table["sequence"].astype(str).str.upper().tolist()
    flags = list(flags) if flags is not None else flags_column(seqs, c)
    bad = [i for i, f in enumerate(flags) if f != "none"]
    results = {i: repair_design(seqs[i], c, seed=seed) for i in bad}
    report = pd.DataFrame({"id": [table["id"].iloc[i] for i in bad], "flags_before": [flags[i] for i in bad],
                           "bases_changed": [len(results[i].changed) for i in bad],
                           "positions": [" ".join(map(str, results[i].changed)) for i in bad]})
    status = ["rejected: unsolved" if not results[i].passes else "repaired" for i in bad]
    if bad:
        before = encode([seqs[i] for i in bad])
        after = encode([results[i].sequence for i in bad])
        rb, ra = score(before).cpu().numpy(), score(after).cpu().numpy()
        report["reward_before"], report["reward_after"], report["reward_change"] = rb, ra, ra - rb
        if eval_score is not None:
            report["eval_reward_before"] = eval_score(before).cpu().numpy()
            report["eval_reward_after"] = eval_score(after).cpu().numpy()
        status = [s if s != "repaired" or rb[j] - ra[j] < margin else "rejected: reward"
                  for j, s in enumerate(status)]
    report.insert(1, "status", status)
    kept = table.copy()
    kept["repair"] = ["clean" if f == "none" else "" for f in flags]
    kept["bases_changed"] = 0
    kept["flags"] = flags
    for j, i in enumerate(bad):
        if status[j] != "repaired":
            continue
        row = kept.index[i]
        kept.loc[row, ["sequence", "repair", "bases_changed", "flags"]] = [
            results[i].sequence, "repaired", len(results[i].changed), "none"]
        if "reward" in kept:
            kept.loc[row, "reward"] = report["reward_after"].iloc[j]
        if eval_score is not None and "eval_reward" in kept:
            kept.loc[row, "eval_reward"] = report["eval_reward_after"].iloc[j]
    kept = kept[kept["repair"] != ""]
    return kept, report
