"""`simpo-bio evaluate --fasta` refuses a directory / binary / missing file before torch is imported."""

import subprocess
import sys

import pytest

CODE = """
import sys
from simpo_bio.cli import main
try:
    main(["evaluate", "--fasta", sys.argv[1]])
except SystemExit as e:
    assert "torch" not in sys.modules, "torch was imported before the input check"
    raise SystemExit(e.code)
"""


@pytest.mark.parametrize("kind,needle", [("dir", "is a directory"), ("binary", "binary content"),
                                         ("missing", "not found")])
def test_bad_fasta_fails_in_one_line_before_heavy_imports(tmp_path, kind, needle):
    path = {"dir": tmp_path, "binary": tmp_path / "x.fa", "missing": tmp_path / "nope.fa"}[kind]
    if kind == "binary":
        path.write_bytes(b">a\n\x00\x01\x02ACGT\n")
    out = subprocess.run([sys.executable, "-c", CODE, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and str(path) in lines[0]


def test_gzip_is_not_mistaken_for_binary(tmp_path):
    import gzip

    from simpo_bio.cli import precheck_fasta

    p = tmp_path / "x.fa.gz"
    p.write_bytes(gzip.compress(b">a\nACGT\n"))
    precheck_fasta("evaluate", ["--fasta", str(p)])  # no SystemExit: the reader handles gzip
    precheck_fasta("evaluate", ["--ckpt", "x.ckpt"])  # no --fasta: nothing to check
