"""kfitx.runtime.compile_cache: on JAX, a search's trials share compiled programs through the search directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")
pytest.importorskip("keras_tuner")

SEARCH = textwrap.dedent("""
    import os, sys
    import numpy as np, keras, keras_tuner, jax
    import kfitx.tuner

    def build(hp):
        hp.Float("lr", 1e-3, 1e-2)  # the program is the same whatever the learning rate
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
        return model

    x, y = np.zeros((20, 4), "float32"), np.zeros(20, "int32")
    tuner = keras_tuner.RandomSearch(kfitx.tuner.StrategyHyperModel(build), objective="loss", max_trials=2,
                                     directory=sys.argv[1], project_name="p", seed=1)
    tuner.search(x, y, epochs=1, verbose=0)
    print("CACHE", jax.config.jax_compilation_cache_dir or "")
""")


def _search(tmp_path, backend, **env):
    script = tmp_path / "search.py"
    script.write_text(SEARCH)
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "s")], capture_output=True, text=True,
                         env={**os.environ, "KERAS_BACKEND": backend, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    cache = tmp_path / "s" / "p" / "kfitx-compile-cache"
    line = next(line for line in out.stdout.splitlines() if line.startswith("CACHE"))
    return cache, line.removeprefix("CACHE").strip()


@pytest.mark.slow
def test_a_jax_search_keeps_its_compiled_programs_in_its_directory(tmp_path):
    cache, configured = _search(tmp_path, "jax")
    assert configured == str(cache) and any(cache.iterdir())


@pytest.mark.slow
def test_it_can_be_turned_off_and_a_users_own_cache_directory_is_kept(tmp_path):
    cache, configured = _search(tmp_path, "jax", KFITX_COMPILE_CACHE="0")
    assert configured == "" and not cache.exists()
    own = tmp_path / "own"
    cache, configured = _search(tmp_path, "jax", JAX_COMPILATION_CACHE_DIR=str(own))
    assert configured == str(own) and not cache.exists()


def test_nothing_changes_on_tensorflow(tmp_path):
    from kfitx.runtime.compile_cache import share_compiled

    assert share_compiled(str(tmp_path)) is None and not (tmp_path / "kfitx-compile-cache").exists()
