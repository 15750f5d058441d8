"""TrtEngine: plan checks (pure, real code paths) and engine logic over an in-memory stand-in.

The stand-in (tests/_trt_standin.py) is NOT TensorRT and NOT a GPU; it lets the
engine's own bookkeeping run on a CPU. Real-binding API conformance is in
test_runtime_trt_conformance.py; a real GPU run is not verified here.
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings

import numpy as np
import pytest

from tests._runtime_helpers import reference_onnx, sample_batch
from tests._trt_standin import PLAN_MAGIC, StandinCuda, standin_tensorrt
from edgeres.runtime import (
    Engine,
    EngineClosedError,
    EngineInputError,
    PlanIntegrityError,
    PlanMismatchError,
    PlanVersionWarning,
    SidecarMissingWarning,
)
from edgeres.runtime.trt_engine import TrtEngine, plan_mismatches
from edgeres.sidecar import PlanSidecar, TensorSpec, write_sidecar

MAX_BATCH = 8


@pytest.fixture(scope="module")
def onnx_bytes():
    return reference_onnx().read_bytes()


def make_sidecar(plan: bytes, *, version="10.3.0", cc=(8, 7), sha=None) -> PlanSidecar:
    return PlanSidecar(
        tensorrt_version=version, compute_capability=cc, device_name="Jetson AGX Orin", precision="fp16",
        inputs=(TensorSpec("input", (-1, 1, 28, 28), "float32"),), outputs=(TensorSpec("logits", (-1, 10), "float32"),),
        min_batch=1, opt_batch=4, max_batch=MAX_BATCH, plan_sha256=sha or hashlib.sha256(plan).hexdigest(),
        onnx_sha256="0" * 64, edgeres_version="0.1.0",
        recipe={"input_size": [28, 28], "in_channels": 1, "resize": None, "mean": [0.1307], "std": [0.3081],
                "num_classes": 10},
    )


@pytest.fixture()
def plan_path(tmp_path, onnx_bytes):
    path = tmp_path / "model.plan"
    path.write_bytes(PLAN_MAGIC + onnx_bytes)
    write_sidecar(path, make_sidecar(path.read_bytes()))
    return path


@pytest.fixture()
def cuda():
    return StandinCuda(compute_capability=(8, 7))


def open_standin(path, cuda, **kw) -> TrtEngine:
    return Engine(path, _trt=standin_tensorrt(cuda, max_batch=MAX_BATCH), _cuda=cuda, **kw)


def reference(onnx_bytes, x):
    import onnxruntime as ort

    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


# --- pure plan checks ------------------------------------------------------------------------


def test_plan_mismatches_name_both_sides():
    sidecar = make_sidecar(b"x", version="10.3.0.30")
    assert plan_mismatches(sidecar, "10.3.0.30", (8, 7)) == [], "same version, build and device: compatible"
    problems = plan_mismatches(sidecar, "8.6.1", (7, 2))
    assert problems == ["TensorRT 10.3.0.30 (this machine: TensorRT 8.6.1)",
                        "compute capability 8.7 (this machine: 7.2)"], problems


def test_plan_mismatches_compare_the_build_number():
    """NVIDIA: plans need major, minor, patch and build to match (Support Policies, API Versioning)."""
    sidecar = make_sidecar(b"x", version="10.3.0.26")
    assert plan_mismatches(sidecar, "10.3.0.30", (8, 7)) == ["TensorRT 10.3.0.26 (this machine: TensorRT 10.3.0.30)"], (
        "a different build of 10.3.0 cannot load the plan"
    )
    assert plan_mismatches(make_sidecar(b"x", version="10.3.0"), "10.3.0", (8, 7)) == [], (
        "two pip wheels of one release report the same three parts: compatible"
    )


@pytest.mark.parametrize(("built", "here"), [("10.3.0", "10.3.0.30"), ("10.3.0.30", "10.3.0")])
def test_plan_with_one_unknown_build_warns_naming_both_versions(built, here):
    with pytest.warns(PlanVersionWarning, match=rf"TensorRT {re.escape(built)}, this machine has TensorRT "
                                                rf"{re.escape(here)}.*edgeres compile"):
        problems = plan_mismatches(make_sidecar(b"x", version=built), here, (8, 7))
    assert problems == [], f"an unknown build is a warning (TensorRT's deserializer decides), got {problems}"


def test_plan_with_unreadable_version_is_an_engine_error():
    from edgeres.errors import EngineError

    with pytest.raises(EngineError, match="TensorRT version must look like"):
        plan_mismatches(make_sidecar(b"x", version="ten\x00"), "10.3.0", (8, 7))


# --- opening ---------------------------------------------------------------------------------


def test_wrong_tensorrt_version_is_refused_with_rebuild_command(plan_path, cuda):
    trt = standin_tensorrt(cuda, version="8.6.1")
    with pytest.raises(PlanMismatchError, match=r"built on Jetson AGX Orin for TensorRT 10\.3\.0 \(this machine: "
                                                r"TensorRT 8\.6\.1\).*major\.minor\.patch\.build.*edgeres compile"):
        Engine(plan_path, _trt=trt, _cuda=cuda)


def test_other_build_of_the_same_release_is_refused_before_tensorrt(plan_path, cuda, onnx_bytes):
    write_sidecar(plan_path, make_sidecar(plan_path.read_bytes(), version="10.3.0.26"))
    trt = standin_tensorrt(cuda, version="10.3.0.30")
    with pytest.raises(PlanMismatchError, match=r"TensorRT 10\.3\.0\.26 \(this machine: TensorRT 10\.3\.0\.30\)"):
        Engine(plan_path, _trt=trt, _cuda=cuda)


def test_wrong_compute_capability_is_refused(plan_path):
    other = StandinCuda(compute_capability=(7, 2))
    with pytest.raises(PlanMismatchError, match=r"compute capability 8\.7 \(this machine: 7\.2\).*rebuild"):
        open_standin(plan_path, other)
    (plan_path.parent / "manifest.json").write_text("{}")
    with pytest.raises(PlanMismatchError, match=f"edgeres compile {plan_path.parent}"):
        open_standin(plan_path, other)  # inside a bundle the hint names the bundle folder


def test_sidecar_sha256_mismatch_is_refused(plan_path, cuda):
    write_sidecar(plan_path, make_sidecar(b"", sha="ab" * 32))
    with pytest.raises(PlanIntegrityError, match=r"does not match its sidecar model\.plan\.json: expected sha256 "
                                                 r"abababab.*received"):
        open_standin(plan_path, cuda)


def test_missing_sidecar_warns_then_opens(plan_path, cuda):
    plan_path.with_name("model.plan.json").unlink()
    with pytest.warns(SidecarMissingWarning, match="no sidecar model.plan.json"):
        engine = open_standin(plan_path, cuda)
    with engine:
        assert engine.infer(sample_batch(1)).shape == (1, 10), "plan without sidecar still runs"


@pytest.mark.parametrize(("content", "pattern"), [(b"", "is empty"), (b"corrupt bytes", "could not deserialize")])
def test_corrupt_or_empty_plan(tmp_path, cuda, content, pattern):
    path = tmp_path / "model.plan"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SidecarMissingWarning)
        with pytest.raises(PlanIntegrityError, match=pattern):
            open_standin(path, cuda)


# --- running ---------------------------------------------------------------------------------


def test_io_batch_profile_and_recipe_come_from_engine_and_sidecar(plan_path, cuda):
    with open_standin(plan_path, cuda) as e:
        assert isinstance(e, TrtEngine) and e.backend == "tensorrt", type(e)
        assert (e.min_batch, e.opt_batch, e.max_batch) == (1, 4, MAX_BATCH), (e.min_batch, e.opt_batch, e.max_batch)
        assert e.inputs[0].shape == (-1, 1, 28, 28) and e.inputs[0].dtype == np.float32, e.inputs
        assert e.recipe is not None and e.recipe.mean == (0.1307,), e.recipe


def test_dynamic_batches_match_reference(plan_path, cuda, onnx_bytes):
    with open_standin(plan_path, cuda) as e:
        for batch in (1, 3, MAX_BATCH, 2):
            x = sample_batch(batch, seed=batch)
            np.testing.assert_allclose(e.infer(x), reference(onnx_bytes, x), rtol=1e-6, atol=1e-6,
                                       err_msg=f"batch {batch} output differs")
        with pytest.raises(EngineInputError, match=r"batch 9 is outside.*1 <= N <= 8.*rebuild with a larger max batch"):
            e.infer(sample_batch(MAX_BATCH + 1))
        with pytest.raises(EngineInputError, match="expected float32.*received float16"):
            e.infer(sample_batch(1).astype(np.float16))


def test_async_results_survive_later_calls_on_the_same_thread(plan_path, cuda, onnx_bytes):
    xs = [sample_batch(2, seed=s) for s in range(3)]
    with open_standin(plan_path, cuda) as e:
        pending = [e.infer_async(x) for x in xs]  # all share one slot's buffers
        assert not pending[-1].done(), "stand-in stream runs only on synchronize: work is still queued"
        for p, x in zip(pending, xs):
            np.testing.assert_allclose(p.result(), reference(onnx_bytes, x), rtol=1e-6, atol=1e-6,
                                       err_msg="an earlier async result was overwritten by a later call")
        assert pending[-1].done(), "collected results are done"


def test_caller_stream_is_used(plan_path, cuda):
    with open_standin(plan_path, cuda) as e:
        handle = cuda.stream_create()
        p = e.infer_async(sample_batch(1), stream=handle)
        assert len(cuda.streams[handle]) == 3, "H2D, execute and D2H must be queued on the caller's stream"
        assert p.result().shape == (1, 10), "result from the caller's stream"
        cuda.stream_destroy(handle)


def test_gpu_inputs_are_bound_without_copy(plan_path, cuda, onnx_bytes):
    from tests.test_runtime_arrays import CaiTensor

    x = sample_batch(2, seed=4)
    device = cuda.malloc(x.nbytes)
    np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * x.nbytes).from_address(device.ptr))[:] = x.view(np.uint8).ravel()
    gpu_tensor = CaiTensor(np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * x.size).from_address(device.ptr))
                           .reshape(x.shape))
    other = sample_batch(2, seed=99)
    with open_standin(plan_path, cuda) as e:
        e.infer(other)  # the engine's own input buffer now holds other data than the GPU tensor
        copies = cuda.h2d
        out = e.infer(gpu_tensor)
        assert cuda.h2d == copies, "a GPU input must not be copied host-to-device"
        np.testing.assert_allclose(out, reference(onnx_bytes, x), rtol=1e-6, atol=1e-6, err_msg="zero-copy result")
        strided = CaiTensor(np.asfortranarray(x))
        with pytest.raises(EngineInputError, match="C-contiguous GPU tensor"):
            e.infer(strided)
        np.testing.assert_allclose(e.infer(other), reference(onnx_bytes, other), rtol=1e-6, atol=1e-6,
                                   err_msg="host input after a GPU input must rebind the engine's own buffer")
    cuda.free(device)


def test_cuda_graph_is_captured_once_then_replayed(plan_path, cuda, onnx_bytes):
    x = sample_batch(3, seed=8)
    with open_standin(plan_path, cuda, cuda_graph=True) as e:
        outs = [e.infer(x) for _ in range(4)]
        assert cuda.captures == 1 and cuda.launches == 3, f"captures {cuda.captures}, launches {cuda.launches}"
        e.infer(sample_batch(1))
        assert cuda.captures == 2, "a new shape gets its own graph"
    for out in outs:
        np.testing.assert_allclose(out, reference(onnx_bytes, x), rtol=1e-6, atol=1e-6, err_msg="graph replay result")


def test_one_context_per_thread_and_ended_threads_hand_theirs_on(plan_path, cuda, onnx_bytes):
    x = sample_batch(2, seed=6)
    expected = reference(onnx_bytes, x)
    errors: list[str] = []
    with open_standin(plan_path, cuda) as e:
        barrier = threading.Barrier(4)
        all_hold_a_slot = threading.Barrier(4)  # no thread may end (and hand its slot on) before all have one

        def work() -> None:
            barrier.wait()
            for i in range(25):
                if not np.allclose(e.infer(x), expected, rtol=1e-6, atol=1e-6):
                    errors.append("mismatch")
                if i == 0:
                    all_hold_a_slot.wait()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(e._slots) == 4, f"expected one slot per concurrent thread, got {len(e._slots)}"
        later = threading.Thread(target=lambda: e.infer(x))
        later.start()
        later.join()
        assert len(e._slots) == 4, "a new thread must adopt an ended thread's slot, not allocate another"
    assert not errors, f"{len(errors)} threaded outputs differ"


def test_close_frees_every_buffer_stream_and_event(plan_path, cuda):
    e = open_standin(plan_path, cuda, cuda_graph=True)
    pending = e.infer_async(sample_batch(2))
    threading.Thread(target=lambda: e.infer(sample_batch(1))).start()
    e.infer(sample_batch(1))
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join(timeout=30)
    assert cuda.live_device and cuda.live_host, "buffers exist while open"
    e.close()
    assert not cuda.live_device and not cuda.live_host, f"leaked {len(cuda.live_device)} device / {len(cuda.live_host)} host"
    assert not cuda.events and not cuda.graphs, f"leaked events {cuda.events} graphs {cuda.graphs}"
    assert set(cuda.streams) == set(), f"leaked streams {list(cuda.streams)}"
    assert pending.result().shape == (2, 10), "a result handed out before close() stays readable"
    with pytest.raises(EngineClosedError):
        e.infer(sample_batch(1))


def test_gpu_input_waits_for_its_producer_stream(plan_path, cuda, onnx_bytes):
    from tests.test_runtime_arrays import CaiTensor

    x = sample_batch(2, seed=12)
    device = cuda.malloc(x.nbytes)
    producer = cuda.stream_create()
    cuda.memcpy_htod_async(device.ptr, x, producer)  # queued, not yet run: the data is not there yet
    view = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_float * x.size).from_address(device.ptr)).reshape(x.shape)
    with open_standin(plan_path, cuda) as e:
        out = e.infer(CaiTensor(view, stream=producer))
    np.testing.assert_allclose(out, reference(onnx_bytes, x), rtol=1e-6, atol=1e-6,
                               err_msg="the engine read a GPU input before its producer stream wrote it")
    cuda.stream_destroy(producer)
    cuda.free(device)


def test_forgotten_close_frees_on_garbage_collection(plan_path, cuda):
    import gc

    e = open_standin(plan_path, cuda)
    e.infer(sample_batch(1))
    assert cuda.live_device, "buffers exist while the engine lives"
    del e
    gc.collect()
    assert not cuda.live_device and not cuda.live_host, "an engine dropped without close() leaked buffers"


# --- execution contexts per TensorRT version (stand-in follows each version's header) ------------

from edgeres.runtime.trt_engine import ContextPolicy, context_policy  # noqa: E402

THREADS = 6
# (TensorRT, profiles built, sidecar profile_sharing, engine built with sharing, contexts allowed (None: any))
VERSIONS = [
    pytest.param("8.5.2.2", 1, False, False, 1, id="8.5-one-profile-serialized"),
    pytest.param("8.5.2.2", 3, False, False, 3, id="8.5-three-profiles"),
    pytest.param("8.6.2.3", 1, True, True, None, id="8.6-profile-sharing"),
    pytest.param("8.6.2.3", 1, None, False, 1, id="8.6-old-sidecar-no-sharing"),
    pytest.param("10.3.0.30", 1, True, False, None, id="10.3"),
    pytest.param("11.4.0.106", 1, True, False, None, id="11.4"),
]


def versioned_plan(tmp_path, onnx_bytes, version, sharing):
    import dataclasses

    path = tmp_path / "model.plan"
    path.write_bytes(PLAN_MAGIC + onnx_bytes)
    write_sidecar(path, dataclasses.replace(make_sidecar(path.read_bytes(), version=version), profile_sharing=sharing))
    return path


@pytest.mark.parametrize(("version", "profiles", "recorded", "built", "limit"), VERSIONS)
def test_context_policy_follows_the_version_rules(version, profiles, recorded, built, limit):
    policy = context_policy(version, recorded, True, tuple(range(profiles)))
    assert policy.limit == limit, f"TensorRT {version}, {profiles} profile(s), sharing {recorded}: {policy}"
    selects = [policy.profile_for(i) for i in range(limit or 3)]
    want = {"8.5": list(range(limit or 3)), "8.6": [0] * 3 if recorded else [0], "10.": [None] * 3, "11.": [None] * 3}
    assert selects == want[version[:3]], f"TensorRT {version}: contexts select profiles {selects}"
    static = context_policy(version, recorded, False, (0,))
    assert static == ContextPolicy(None, None, True, static.reason), "no dynamic shapes: any number of contexts"


@pytest.mark.parametrize(("version", "profiles", "recorded", "built", "limit"), VERSIONS)
def test_threads_infer_concurrently_on_each_version(tmp_path, onnx_bytes, version, profiles, recorded, built, limit):
    """N threads at once: all succeed; contexts never exceed what the version allows; each has a valid profile."""
    cuda = StandinCuda((8, 7))
    trt = standin_tensorrt(cuda, version=version, max_batch=MAX_BATCH, profiles=profiles, sharing=built)
    inputs = [sample_batch(1 + i % 3, seed=i) for i in range(THREADS)]
    expected = [reference(onnx_bytes, x) for x in inputs]
    errors: list[str] = []
    with Engine(versioned_plan(tmp_path, onnx_bytes, version, recorded), _trt=trt, _cuda=cuda) as e:
        barrier = threading.Barrier(THREADS)
        all_ran_once = threading.Barrier(THREADS)  # every thread alive with a context: none can be handed on

        def work(t: int) -> None:
            try:
                barrier.wait()
                for k in range(8):
                    out = e.infer(inputs[t]) if k % 2 else e.infer_async(inputs[t]).result()
                    if not np.allclose(out, expected[t], rtol=1e-6, atol=1e-6):
                        errors.append(f"thread {t} run {k}: wrong output")
                    if k == 0:
                        all_ran_once.wait(timeout=60)
            except Exception as exc:  # reported below
                errors.append(f"thread {t}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        engine = trt.engines[0]
        contexts = len(engine.contexts)
        profiles_in_use = sorted(c.profile for c in engine.live)
    assert not errors, f"TensorRT {version}: {errors[:3]}"
    assert not engine.errors, f"TensorRT {version} stand-in logged errors: {engine.errors[:3]}"
    if limit is None:
        assert contexts == THREADS, f"TensorRT {version}: expected one context per thread, got {contexts}"
    else:
        assert 1 <= contexts <= limit, f"TensorRT {version}: {contexts} contexts, the engine allows {limit}"
    assert -1 not in profiles_in_use, f"a context ran without an optimization profile: {profiles_in_use}"
    if limit is not None:
        assert len(set(profiles_in_use)) == len(profiles_in_use), f"contexts share a profile: {profiles_in_use}"


def test_full_pool_makes_threads_wait_not_fail(tmp_path, onnx_bytes):
    """8.5 with one profile: a second thread waits for the only context and then runs on it."""
    cuda = StandinCuda((8, 7))
    trt = standin_tensorrt(cuda, version="8.5.2.2", max_batch=MAX_BATCH, profiles=1)
    x = sample_batch(2, seed=3)
    done: list[np.ndarray] = []
    with Engine(versioned_plan(tmp_path, onnx_bytes, "8.5.2.2", False), _trt=trt, _cuda=cuda) as e:
        with e._lease():  # this thread holds the only context
            other = threading.Thread(target=lambda: done.append(e.infer(x)))
            other.start()
            other.join(timeout=0.3)
            assert other.is_alive() and not done, "the second thread must wait while the only context is held"
        other.join(timeout=30)
        assert done and np.allclose(done[0], reference(onnx_bytes, x), rtol=1e-6, atol=1e-6), "then it runs"
        assert len(trt.engines[0].contexts) == 1, "no second context may be created on an 8.5 one-profile engine"


def test_threads_waiting_for_a_context_see_close(tmp_path, onnx_bytes):
    cuda = StandinCuda((8, 7))
    trt = standin_tensorrt(cuda, version="8.5.2.2", max_batch=MAX_BATCH, profiles=1)
    failures: list[BaseException] = []

    def wait_then_fail() -> None:
        try:
            e.infer(sample_batch(1))
        except BaseException as exc:
            failures.append(exc)

    e = Engine(versioned_plan(tmp_path, onnx_bytes, "8.5.2.2", False), _trt=trt, _cuda=cuda)
    with e._lease():
        waiter = threading.Thread(target=wait_then_fail)
        waiter.start()
        waiter.join(timeout=0.2)
        assert waiter.is_alive(), "the waiter must be waiting for the only context"
        e.close()  # while the waiter waits: it must wake and give up, not wait forever
    waiter.join(timeout=30)
    assert not waiter.is_alive(), "a thread waiting for a context must wake when the engine closes"
    assert failures and isinstance(failures[0], EngineClosedError), f"a waiting thread must see close: {failures}"


def _two_contexts(e) -> list[BaseException]:
    """Force a second context: hold the first on this thread while another thread infers."""
    errors: list[BaseException] = []

    def other() -> None:
        try:
            e.infer(sample_batch(1))
        except BaseException as exc:
            errors.append(exc)

    with e._lease():
        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=30)
    return errors


def test_second_context_selects_its_own_profile_on_8_5(tmp_path, onnx_bytes, monkeypatch):
    """Regression guard: without set_optimization_profile_async the 8.5 stand-in refuses the second context."""
    cuda = StandinCuda((8, 7))
    trt = standin_tensorrt(cuda, version="8.5.2.2", max_batch=MAX_BATCH, profiles=2)
    with Engine(versioned_plan(tmp_path, onnx_bytes, "8.5.2.2", False), _trt=trt, _cuda=cuda) as e:
        assert _two_contexts(e) == [], "two contexts with profiles 0 and 1 must both run"
        assert sorted(c.profile for c in trt.engines[0].live) == [0, 1], "each context has its own profile"
    monkeypatch.setattr(ContextPolicy, "profile_for", lambda self, i: None)  # the regression: no selection
    trt = standin_tensorrt(cuda, version="8.5.2.2", max_batch=MAX_BATCH, profiles=2)
    with Engine(versioned_plan(tmp_path, onnx_bytes, "8.5.2.2", False), _trt=trt, _cuda=cuda) as e:
        errors = _two_contexts(e)
    assert errors and "refused input" in str(errors[0]), f"without profile selection 8.5 must fail: {errors}"


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.2.3"])
def test_unbounded_contexts_fail_where_profiles_are_not_shared(tmp_path, onnx_bytes, monkeypatch, version):
    """Regression guard: treating 8.5/8.6-without-sharing like 10.x (no limit) fails on the stand-in."""
    from edgeres.runtime import trt_engine

    cuda = StandinCuda((8, 7))
    monkeypatch.setattr(trt_engine, "context_policy", lambda *a: ContextPolicy(None, None, True, "regression"))
    trt = standin_tensorrt(cuda, version=version, max_batch=MAX_BATCH, profiles=1)
    with Engine(versioned_plan(tmp_path, onnx_bytes, version, False), _trt=trt, _cuda=cuda) as e:
        errors = _two_contexts(e)
    assert errors, f"TensorRT {version}: a second context without its own profile must fail"
    assert any("no optimization profile" in m for m in trt.engines[0].errors), trt.engines[0].errors


def test_8_6_sharing_claimed_but_not_built_fails(tmp_path, onnx_bytes):
    """Regression guard for the builder: an 8.6 plan whose sidecar says sharing but which was built without
    PROFILE_SHARING_0806 cannot give a second context profile 0 (NvInfer.h 8.6: the flag defaults to false)."""
    cuda = StandinCuda((8, 7))
    trt = standin_tensorrt(cuda, version="8.6.2.3", max_batch=MAX_BATCH, profiles=1, sharing=False)
    with Engine(versioned_plan(tmp_path, onnx_bytes, "8.6.2.3", True), _trt=trt, _cuda=cuda) as e:
        errors = _two_contexts(e)
    assert errors and "refused optimization profile 0" in str(errors[0]), f"expected a refusal, got {errors}"
    assert "already used by another execution context" in " ".join(trt.engines[0].errors), trt.engines[0].errors


def test_10_x_contexts_get_profile_0_without_selecting(tmp_path, onnx_bytes):
    cuda = StandinCuda((8, 7))
    trt = standin_tensorrt(cuda, version="10.3.0.30", max_batch=MAX_BATCH)
    with Engine(versioned_plan(tmp_path, onnx_bytes, "10.3.0.30", True), _trt=trt, _cuda=cuda) as e:
        assert _two_contexts(e) == [], "two contexts on 10.x"
        engine = trt.engines[0]
        assert [c.profile for c in engine.live] == [0, 0], "NvInferRuntime.h 10.0: every new context gets profile 0"
        assert engine.profile_selections == [], "nothing to select on 10.x"


# --- CUDA graphs: capture after a synchronized plain run, one warning on failure --------------------


def test_stream_is_synchronized_before_capture(plan_path, cuda):
    queued: list[int] = []
    real_capture = cuda.graph_capture

    def capture(stream, enqueue):
        queued.append(len(cuda.streams[stream]))
        return real_capture(stream, enqueue)

    cuda.graph_capture = capture
    with open_standin(plan_path, cuda, cuda_graph=True) as e:
        e.infer(sample_batch(2))
    assert queued == [0], f"work was still queued on the stream when capture began: {queued} (trtexec synchronizes)"


def test_failed_capture_falls_back_with_one_warning(plan_path, cuda, onnx_bytes):
    from edgeres.runtime import CudaError, CudaGraphWarning

    attempts: list[int] = []

    def broken_capture(stream, enqueue):
        attempts.append(stream)
        raise CudaError("cudaStreamBeginCapture failed: expected cudaSuccess, received cudaErrorNotSupported (801)")

    cuda.graph_capture = broken_capture
    x = sample_batch(3, seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open_standin(plan_path, cuda, cuda_graph=True) as e:
            outs = [e.infer(x) for _ in range(3)]
            t = threading.Thread(target=lambda: outs.append(e.infer(x)))  # another slot: no second warning
            t.start()
            t.join()
            outs.append(e.infer(sample_batch(1)))  # another shape: no new attempt
    graph_warnings = [w for w in caught if issubclass(w.category, CudaGraphWarning)]
    assert len(graph_warnings) == 1, f"expected one CudaGraphWarning, got {[str(w.message) for w in graph_warnings]}"
    assert "without CUDA graphs" in str(graph_warnings[0].message), graph_warnings[0].message
    assert len(attempts) == 1, f"capture must not be retried after it failed: {len(attempts)} attempts"
    for out in outs[:4]:
        np.testing.assert_allclose(out, reference(onnx_bytes, x), rtol=1e-6, atol=1e-6, err_msg="plain fallback result")
