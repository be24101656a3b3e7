"""A weights file is data: loading one never unpickles it, so it cannot run code."""
import pathlib
import re
import tokenize

import numpy as np
import pytest

import tfseg
from tfseg.errors import DataError
from tfseg.models import fcn_alexnet
from tfseg.models import weights as weights_lib

TINY = {"width": 0.125, "fc_units": 16}


class _TouchOnUnpickle:
    """Unpickling this object calls `open(marker, "w")`: the proof that a load ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _hostile_npy(tmp_path):
    """A .npy in the layout of bvlc_alexnet.npy (an object array holding a dict) whose dict holds
    an object that creates a marker file when unpickled."""
    marker = tmp_path / "pwned"
    payload = np.empty((), dtype=object)
    payload[()] = {"conv1": [_TouchOnUnpickle(str(marker)), np.zeros(3)]}
    path = tmp_path / "bvlc_alexnet.npy"
    np.save(path, payload, allow_pickle=True)
    # the file really does run code when unpickled (checked in a throwaway copy of the marker)
    probe = tmp_path / "probe"
    np.save(tmp_path / "probe.npy", np.array({"x": _TouchOnUnpickle(str(probe))}, dtype=object))
    np.load(tmp_path / "probe.npy", allow_pickle=True)
    assert probe.exists()
    return path, marker


def test_pickled_npy_is_refused_without_running_it(tmp_path):
    path, marker = _hostile_npy(tmp_path)
    with pytest.raises(DataError) as info:
        fcn_alexnet((64, 64, 3), weights=str(path), **TINY)
    assert not marker.exists()
    message = str(info.value)
    assert info.value.path == str(path)
    assert "pickled" in message and "never unpickles" in message
    assert "save_caffe_npz('bvlc_alexnet.npz'" in message  # says how to convert
    with pytest.raises(DataError):
        weights_lib.load_weights_file(fcn_alexnet((64, 64, 3), **TINY), path,
                                      caffe_layers=("conv1",))
    assert not marker.exists()


def test_npz_holding_a_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "bvlc_alexnet.npz"
    np.savez(path, **{"conv1/0": np.array([_TouchOnUnpickle(str(marker))], dtype=object)})
    with pytest.raises(DataError, match="pickled Python objects"):
        fcn_alexnet((64, 64, 3), weights=str(path), **TINY)
    assert not marker.exists()


def test_converted_npz_loads_the_same_weights(tmp_path):
    rng = np.random.default_rng(0)
    c1 = 12  # conv1 filters at width 0.125
    named = {"conv1": {"weights": rng.normal(size=(11, 11, 3, c1)).astype("float32"),
                       "biases": rng.normal(size=c1).astype("float32")}}
    path = weights_lib.save_caffe_npz(str(tmp_path / "w.npz"), named)
    read = weights_lib.read_caffe_npz(path)
    np.testing.assert_array_equal(read["conv1"][0], named["conv1"]["weights"])
    np.testing.assert_array_equal(read["conv1"][1], named["conv1"]["biases"])
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert sorted(archive.files) == ["conv1/0", "conv1/1"]


_UNPICKLE = re.compile(r"allow_pickle=True|pickle\.loads?\(|joblib\.load\(|torch\.load\(|dill\.loads?\(|"
                       r"marshal\.loads?\(|yaml\.load\(|yaml\.unsafe_load|shelve\.open\(|read_pickle\(|"
                       r"Unpickler\(")


def _code_lines(source):
    """(line number, code) of a Python file with comments and string literals blanked out."""
    lines = {}
    with open(source, "rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING, tokenize.ENCODING) or (
                    token.type == getattr(tokenize, "FSTRING_MIDDLE", -1)):
                continue
            lines.setdefault(token.start[0], []).append(token.string)
    return {number: " ".join(parts) for number, parts in lines.items()}


def test_no_code_path_of_tfseg_unpickles():
    package = pathlib.Path(tfseg.__file__).parent
    offenders = []
    for source in sorted(package.rglob("*.py")):
        for number, code in _code_lines(source).items():
            compact = code.replace(" ", "")
            if _UNPICKLE.search(compact) or re.search(r"^(import|from)pickle\b", compact):
                offenders.append(f"{source.relative_to(package)}:{number}: {code}")
    assert offenders == []
