import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simpo_bio.dna.data.alphabet import (
    ALPHABET,
    MASK_INDEX,
    VOCAB_SIZE,
    SequenceValidationError,
    decode,
    encode,
    tokenize,
)


def test_constants_match_the_interface():
    assert ALPHABET == "ACGT" and MASK_INDEX == 4 and VOCAB_SIZE == 5


def test_encode_ids_and_lowercase():
    x = encode(["ACGT", "acgt", "TtGg"])
    assert x.dtype == torch.long and x.shape == (3, 4)
    assert x[0].tolist() == [0, 1, 2, 3]
    assert x[1].tolist() == [0, 1, 2, 3]
    assert x[2].tolist() == [3, 3, 2, 2]
    assert encode("GATTACA").shape == (1, 7)


def test_bad_character_names_record_and_position():
    with pytest.raises(SequenceValidationError) as err:
        encode(["ACGT", "ACNT"], names=["good", "enh_7"])
    assert isinstance(err.value, ValueError)
    assert err.value.record == "enh_7" and err.value.position == 2
    assert "'N'" in str(err.value) and "enh_7" in str(err.value) and "position 2" in str(err.value)
    # without names the record is its index; non-ASCII characters are caught too
    with pytest.raises(SequenceValidationError) as err:
        encode(["ACGT", "ACGT", "AC\u00e9T"])
    assert err.value.record == 2 and err.value.position == 2


def test_wrong_length_names_record():
    with pytest.raises(SequenceValidationError) as err:
        encode(["ACGT", "ACG"], length=4, names=["a", "short_one"])
    assert err.value.record == "short_one" and err.value.position is None
    assert "length 3" in str(err.value) and "expected 4" in str(err.value)
    # length taken from the first record when not given
    with pytest.raises(SequenceValidationError, match="expected 4"):
        encode(["ACGT", "ACGTA"])


def test_names_length_mismatch_and_empty():
    with pytest.raises(ValueError, match="names"):
        encode(["AC", "GT"], names=["only_one"])
    assert encode([], length=5).shape == (0, 5)


def test_decode_writes_mask_as_n_and_rejects_bad_ids():
    assert decode(torch.tensor([[0, 1, 2, 3, MASK_INDEX]])) == ["ACGTN"]
    assert decode(np.array([3, 2])) == ["TG"]
    with pytest.raises(ValueError, match="0..4"):
        decode(torch.tensor([[0, 5]]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="ACGTacgt", min_size=7, max_size=7), min_size=1, max_size=8))
def test_round_trip(seqs):
    assert decode(encode(seqs)) == [s.upper() for s in seqs]
    assert tokenize(seqs).dtype == np.int8
