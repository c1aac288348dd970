"""Every bad file or value a user can hand the DNA commands fails with one line and exit status 2, before any model
is loaded and without writing an output file; what is accepted (CRLF, lowercase, gzip) works. Plus a property test:
random bytes as a FASTA never give a traceback, in the reader or in `simpo-bio evaluate --fasta`."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import tiny_checkpoints, tiny_real_sets

from simpo_bio.cli import main
from simpo_bio.dna.data.alphabet import SequenceValidationError
from simpo_bio.dna.data.tables import FastaFormatError, read_fasta
from simpo_bio.dna.design import designs

ROOT = Path(__file__).resolve().parents[2]
GOOD = "ACGT" * 5  # the tiny oracle reads 20 bp


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(autouse=True)
def _tiny_world(monkeypatch):
    monkeypatch.setattr(designs, "real_sets", lambda *a, **k: tiny_real_sets())
    torch.set_num_threads(1)


def run(argv, capsys) -> tuple[int, list[str], float]:
    """``simpo-bio <argv>`` in-process: (exit status, stderr lines, seconds)."""
    start = time.perf_counter()
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    seconds = time.perf_counter() - start
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()], seconds


def evaluate(path, ckpts, out) -> list[str]:
    return ["evaluate", "--fasta", str(path), "--eval-oracle", str(ckpts["eval_oracle"]), "--pretrained", "",
            "--no-jaspar", "--no-novelty", "--out", str(out)]  # fmt: skip


BAD_FASTA = {
    "directory": (None, "is a directory, not a FASTA file"),
    "binary": (b">" + bytes(range(256)) * 40, "binary content (NUL bytes)"),
    "binary_no_nul": (b">x\n" + bytes(range(128, 256)) * 4, "invalid character"),
    "empty": (b"", "empty file"),
    "blank": (b"\n \n", "only blank lines"),
    "duplicate": (f">a\n{GOOD}\n>b\n{GOOD}\n>a\n{GOOD}\n".encode(), "duplicate record id 'a' (records 1 and 3)"),
    "N": (f">a\n{GOOD}\n>b\nACGTACNTACGTACGTACGT\n".encode(), "invalid character 'N'"),
    "length_one": (f">a\n{GOOD}\n>b\nACGT\n".encode(), "sequence has length 4, expected 20 (record 'b')"),
    "length_all": (f">a\n{'A' * 150}\n".encode(), "sequences have length 150 (first record 'a')"),
    "corrupt_gz": (b"\x1f\x8b\x08\x00garbage", "cannot be read"),
    "csv": (b"id,seq\na,ACGT\n", "not a FASTA file"),
    "header_only": (b">a\n", "sequences have length 0"),
}


@pytest.mark.parametrize("name", list(BAD_FASTA))
def test_bad_fasta_one_line_exit_2_fast_no_output(name, ckpts, tmp_path, capsys):
    content, needle = BAD_FASTA[name]
    path = tmp_path / ("dir" if content is None else f"{name}.fa")
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    out = tmp_path / "metrics.csv"
    code, err, seconds = run(evaluate(path, ckpts, out), capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("simpo-bio evaluate: error: ") and needle in err[0] and str(path) in err[0], err
    assert seconds < 1.0 and not out.exists()
    if name == "N":
        assert "record 'b', position 6" in err[0]


@pytest.mark.parametrize("name", ["crlf", "lowercase", "gzip", "gzip_without_suffix"])
def test_accepted_fasta_variants(name, ckpts, tmp_path, capsys):
    text = f">a x=1\n{GOOD}\n>b\n{GOOD.lower()}\n>c\n{GOOD[::-1]}\n"
    path = tmp_path / {"gzip": "d.fa.gz"}.get(name, "d.fa")
    if name == "crlf":
        path.write_bytes(text.replace("\n", "\r\n").encode())
    elif name.startswith("gzip"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    ids, tokens, fields = read_fasta(path)
    assert ids == ["a", "b", "c"] and tokens.shape == (3, 20) and torch.equal(tokens[0], tokens[1])
    out = tmp_path / "m.csv"
    code, err, _ = run(evaluate(path, ckpts, out), capsys)
    assert code == 0 and out.exists(), err


def test_bad_checkpoints_and_values(ckpts, tmp_path, capsys):
    truncated = tmp_path / "t.ckpt"
    truncated.write_bytes(ckpts["pretrained"].read_bytes()[:300])
    unknown = tmp_path / "unknown.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}, "pytorch-lightning_version": "2.6.6"}, unknown)
    fasta = tmp_path / "ok.fa"
    fasta.write_text(f">a\n{GOOD}\n")
    out = tmp_path / "x.fa"
    sample = ["sample", "--num-samples", "2", "--no-score", "--out", str(out), "--ckpt"]
    cases = [
        ([*sample, str(truncated)], "truncated or not a checkpoint"),
        ([*sample, str(ckpts["oracle"])], "written by CellTypeClassifier, expected MaskedDiffusionLM"),
        ([*sample, str(unknown)], "lacks the backbone hyper-parameters"),
        ([*sample, str(tmp_path / "missing.ckpt")], "does not exist"),
        (["sample", "--ckpt", str(ckpts["pretrained"]), "--num-samples", "0", "--out", str(out)], "--num-samples"),
        (["sample", "--ckpt", str(ckpts["pretrained"]), "--num-steps", "-1", "--out", str(out)], "--num-steps"),
        (["sample", "--ckpt", str(ckpts["pretrained"]), "--out", str(tmp_path)], "is a directory"),
        (["evaluate", "--fasta", str(fasta), "--eval-oracle", str(ckpts["pretrained"])], "expected CellTypeClassifier"),
        (["evaluate", "--ckpt", str(ckpts["pretrained"]), "--num-samples", "-5"], "--num-samples must be >= 1"),
    ]
    for argv, needle in cases:
        code, err, seconds = run(argv, capsys)
        assert code == 2 and len(err) == 1 and needle in err[0] and seconds < 1.0, (argv, err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model.init_args.gradient.kl_penalty=-1"], "gradient.kl_penalty must be a finite number >= 0"),
        (["--model.init_args.sampling.group_size=1"], "sampling.group_size must be >= 2"),
        (["--model.init_args.gradient.lr=0"], "gradient.lr must be finite and > 0, got 0"),
        (["--model.init_args.weighting.scheme=exp"], "unrecognized arguments: --weighting.scheme=exp"),  # SiMPO only
        (["--model.init_args.sampling.num_steps", "0"], "sampling.num_steps must be an integer >= 1"),
        (["--model.init_args.group_size=8"], "Option 'group_size' is not accepted"),
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--runs", "0"], "--runs must be >= 1"),
        (["--select-weight", "0"], "--select-weight must be a finite number > 0 (reward per nat"),
        (["--select-weight", "nan"], "--select-weight must be a finite number > 0"),
        (["--seed_everything=3"], "--seed_everything=3: set the seed with --seed"),
        (["--model.init_args.seed", "3"], "--model.init_args.seed: set the seed with --seed"),
        (["--config", "missing.yaml"], "config missing.yaml not found"),
    ],
)
def test_demo_bad_configs_fail_before_anything_is_loaded(extra, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the demo's default configs are relative to the repository root
    from simpo_bio.dna import cli as dna_cli
    from simpo_bio.dna.design import designs as design_module

    def loaded(*a, **k):
        raise AssertionError("the demo loaded data or a model before checking its settings")

    monkeypatch.setattr(design_module, "real_sets", loaded)
    monkeypatch.setattr(dna_cli, "ensure_checkpoints", loaded)
    code, err, seconds = run(["demo", "--out", str(tmp_path / "demo"), *extra], capsys)
    assert code == 2 and len(err) == 1 and needle in err[0] and seconds < 30.0, err
    assert not (tmp_path / "demo").exists()


def test_demo_config_file_named_in_the_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = tmp_path / "t0.yaml"
    cfg.write_text("model:\n  init_args:\n    sampling:\n      num_stepz: 3\n")
    code, err, _ = run(["demo", "--out", str(tmp_path / "d"), "--config", str(cfg)], capsys)
    assert code == 2 and len(err) == 1 and "num_stepz" in err[0] and str(cfg) in err[0], err
    cfg.write_text("model: [unclosed\n")
    code, err, _ = run(["demo", "--out", str(tmp_path / "d"), "--config", str(cfg)], capsys)
    assert code == 2 and len(err) == 1 and str(cfg) in err[0], err


# ------------------------------------------------------------------------------------------ property test
FASTA_LIKE = st.lists(
    st.tuples(st.text(alphabet="abx1 =\t\r", max_size=6), st.text(alphabet="ACGTacgtN\r\n \t>-", max_size=30)),
    max_size=4,
).map(lambda recs: "".join(f">{h}\n{s}\n" for h, s in recs).encode())
VALID_20 = st.lists(st.text(alphabet="ACGTacgt", min_size=20, max_size=20), min_size=1, max_size=5).map(
    lambda seqs: "".join(f">s{i}\r\n{s}\n" for i, s in enumerate(seqs)).encode())
RANDOM_FASTA = st.one_of(st.binary(max_size=400), st.binary(max_size=200).map(lambda b: b">" + b), FASTA_LIKE,
                         FASTA_LIKE.map(gzip.compress), VALID_20)  # fmt: skip
SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW)
@given(data=RANDOM_FASTA)
def test_random_bytes_reader_gives_a_clean_error_or_a_clean_result(data, tmp_path):
    path = tmp_path / "r.fa"
    path.write_bytes(data)
    try:
        ids, tokens, fields = read_fasta(path)
    except (FastaFormatError, SequenceValidationError) as err:
        assert "\n" not in str(err) and str(path) in str(err)
    else:
        assert len(ids) == tokens.shape[0] == len(fields) and len(set(ids)) == len(ids)
        assert tokens.dtype == torch.long and (tokens >= 0).all() and (tokens <= 3).all()


@settings(max_examples=40, deadline=None, suppress_health_check=SLOW)
@given(data=RANDOM_FASTA)
def test_random_bytes_evaluate_never_tracebacks(data, ckpts, tmp_path, capsys):
    path = tmp_path / "r.fa"
    path.write_bytes(data)
    out = tmp_path / "m.csv"
    if out.exists():
        os.unlink(out)
    code, err, _ = run(evaluate(path, ckpts, out), capsys)
    if code == 0:
        assert out.exists()
    else:
        assert code == 2 and len(err) == 1 and err[0].startswith("simpo-bio evaluate: error: "), err
        assert not out.exists()


@pytest.mark.parametrize("where", ["self", "pair", "parent"])
def test_symlink_loop_fasta_is_named_a_symlink_loop(where, ckpts, tmp_path, capsys):
    if where == "self":  # a -> a
        path = tmp_path / "loop.fa"
        path.symlink_to(path)
    elif where == "pair":  # a -> b -> a
        path, other = tmp_path / "a.fa", tmp_path / "b.fa"
        path.symlink_to(other)
        other.symlink_to(path)
    else:  # a folder on the way is a loop
        (tmp_path / "d").symlink_to(tmp_path / "d")
        path = tmp_path / "d" / "x.fa"
    with pytest.raises(FastaFormatError, match="symlink loop") as info:
        read_fasta(path)
    assert str(path) in str(info.value) and "not found" not in str(info.value)
    out = tmp_path / "metrics.csv"
    code, err, seconds = run(evaluate(path, ckpts, out), capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("simpo-bio evaluate: error: ") and "symlink loop" in err[0] and str(path) in err[0], err
    assert "not found" not in err[0] and seconds < 1.0 and not out.exists()
    from simpo_bio.cli import precheck_fasta

    with pytest.raises(SystemExit):  # the check before torch is imported says so too
        precheck_fasta("evaluate", ["--fasta", str(path)])
    assert "symlink loop" in capsys.readouterr().err
