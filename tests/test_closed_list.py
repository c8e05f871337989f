"""Rule G1 (docs/format.md): what an ONNX file in a model folder may hold. vae-export writes nothing outside the
closed list, in any kind of export (fp32 mlp and conv, every int8 way, prior.onnx and score.onnx); the walker
refuses each thing outside it, and a protobuf that does not parse, in words."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from conftest import learned_prior_model, trained
from vae_edge.export import prior_graph, quantize
from vae_edge.export.graphs import decoder_graph, encoder_graph
from vae_edge.export.score_graph import score_graph
from vae_edge.runtime import closed_list
from vae_edge.train.model import VAE as TorchVAE

OPSET = 17  # vae-export's default


def _conv():
    torch.manual_seed(0)
    return trained(TorchVAE("conv", (1, 8, 8), hidden_dim=32, latent_dim=4), steps=2)


def _every_way(model, calibrate: bool) -> dict:
    """name -> graph: fp32 encoder and decoder, and each int8 way vae-export may keep for them."""
    rng = np.random.default_rng(0)
    x = rng.random((16, *model.input_shape), dtype=np.float32) if calibrate else np.zeros((0,), np.float32)
    z = rng.standard_normal((16, model.latent_dim), dtype=np.float32) if calibrate else np.zeros((0,), np.float32)
    enc, dec = encoder_graph(model, OPSET), decoder_graph(model, OPSET)
    graphs = {"encoder": enc, "decoder": dec}
    graphs.update({f"encoder {way}": make() for way, make in quantize._ways(enc, "x", x)})
    if model.arch == "conv":
        ways = quantize._decoder_ways(dec, lambda: decoder_graph(model, OPSET, int8_layout=True), z)
    else:
        ways = quantize._ways(dec, "z", z)
    graphs.update({f"decoder {way}": make() for way, make in ways})
    return graphs


def _exports() -> dict:
    torch.manual_seed(0)
    mlp = trained(TorchVAE("mlp", (1, 8, 8), 16, 3), steps=2)
    vamp = learned_prior_model()
    graphs = {f"mlp {k}": g for k, g in _every_way(mlp, calibrate=False).items()}
    graphs.update({f"conv {k}": g for k, g in _every_way(_conv(), calibrate=True).items()})
    graphs.update({"prior": prior_graph.prior_graph(vamp, OPSET), "score": score_graph(vamp, OPSET)})
    return graphs


@pytest.fixture(scope="module")
def exports() -> dict:
    return _exports()


def test_the_exports_cover_every_int8_way(exports):
    ways = {name.split()[-1] for name in exports
            if name.split()[-1] in ("static", "static-u8", "mixed", "dynamic", "dynamic-u8")}
    assert ways == {"static", "static-u8", "mixed", "dynamic", "dynamic-u8"}
    assert {"conv decoder static", "conv encoder static", "prior", "score"} <= set(exports)


def test_vae_export_never_writes_anything_outside_the_closed_list(exports):
    for name, proto in exports.items():
        assert closed_list.problem(proto.SerializeToString()) is None, name


def test_vae_export_writes_only_the_standard_operator_domain(exports):
    for name, proto in exports.items():
        assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}, name
        assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}, name


def test_the_quantizer_s_imports_of_domains_no_node_uses_are_dropped():
    """onnxruntime 1.15's quantizer, at [train]'s floor, imports ai.onnx.ml, com.microsoft and six more domains
    into every int8 file (tests/test_compat.py exports there); vae-export keeps only the domains its nodes use."""
    model = _graph()
    for domain in ("ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc"):
        model.opset_import.append(helper.make_opsetid(domain, 1))
    kept = quantize.unused_imports_dropped(model)
    assert [(o.domain, o.version) for o in kept.opset_import] == [("", 13)]
    assert closed_list.problem(kept.SerializeToString()) is None


def test_the_folders_vae_export_wrote_hold_nothing_outside_the_closed_list(tiny_export, vamp_export):
    for folder in (tiny_export, vamp_export):
        for path in folder.glob("*.onnx"):
            assert closed_list.problem(path.read_bytes()) is None, path


# -- the walker, on a small graph changed one way at a time ---------------------------------------------------

def _graph(nodes=(), initializers=(), **model_fields) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["z", "W"], ["x"]), *nodes], "g",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])], [w, *initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], **model_fields)


def _external(tensor):
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../secret")
    return tensor


def test_a_plain_graph_is_inside_the_list():
    assert closed_list.problem(_graph().SerializeToString()) is None


def test_an_initializer_stored_outside_the_file_is_refused():
    model = _graph()
    _external(model.graph.initializer[0])
    assert closed_list.problem(model.SerializeToString()) == closed_list.OUTSIDE


def test_an_external_data_entry_is_refused_even_with_data_location_default():
    model = _graph()
    model.graph.initializer[0].external_data.add(key="location", value="secret.bin")
    assert closed_list.problem(model.SerializeToString()) == closed_list.OUTSIDE


def test_a_constant_attribute_stored_outside_the_file_is_refused():
    t = _external(numpy_helper.from_array(np.ones(3, np.float32), "c"))
    model = _graph([helper.make_node("Constant", [], ["c"], value=t)])
    assert closed_list.problem(model.SerializeToString()) == closed_list.OUTSIDE


def test_a_tensors_attribute_stored_outside_the_file_is_refused():
    t = _external(numpy_helper.from_array(np.ones(3, np.float32), "c"))
    node = helper.make_node("Identity", ["x"], ["y"])
    node.attribute.append(helper.make_attribute("extra", [t]))
    assert closed_list.problem(_graph([node]).SerializeToString()) == closed_list.OUTSIDE


def test_a_sparse_initializer_is_refused():
    model = _graph()
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(1, np.float32), "s"), numpy_helper.from_array(np.zeros(1, np.int64), "i"), [2]))
    assert closed_list.problem(model.SerializeToString()) == closed_list.SPARSE


def test_a_sparse_tensor_attribute_is_refused():
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(1, np.float32), "s"),
                                       numpy_helper.from_array(np.zeros(1, np.int64), "i"), [2])
    model = _graph([helper.make_node("Constant", [], ["c"], sparse_value=sparse)])
    assert closed_list.problem(model.SerializeToString()) == closed_list.SPARSE


def test_a_node_in_another_operator_domain_is_refused():
    model = _graph([helper.make_node("QuickGelu", ["x"], ["y"], domain="com.microsoft")])
    assert closed_list.problem(model.SerializeToString()) == \
        "uses operator domain 'com.microsoft'"


def test_another_operator_domain_imported_is_refused_though_no_node_uses_it():
    model = _graph()
    model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    assert closed_list.problem(model.SerializeToString()) == \
        "uses operator domain 'ai.onnx.ml'"


def test_the_default_domain_may_be_named_ai_onnx():
    model = _graph([helper.make_node("Relu", ["x"], ["y"], domain="ai.onnx")])
    assert closed_list.problem(model.SerializeToString()) is None


def test_a_model_local_function_is_refused():
    model = _graph(functions=[helper.make_function("local", "F", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                                                   [helper.make_opsetid("", 13)])])
    assert closed_list.problem(model.SerializeToString()) == closed_list.FUNCTIONS


@pytest.mark.parametrize("attribute", ["g", "graphs"])
def test_a_subgraph_is_refused(attribute):
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "b", [],
                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    if attribute == "graphs":
        node = helper.make_node("Identity", ["x"], ["y"])
        node.attribute.append(helper.make_attribute("branches", [branch]))
    assert closed_list.problem(_graph([node]).SerializeToString()) == closed_list.SUBGRAPH


@pytest.mark.parametrize("damage", ["cut short", "a length past the end", "wire type 3"])
def test_a_protobuf_that_does_not_parse_is_an_error_not_a_verdict(damage):
    data = _graph().SerializeToString()
    data = {"cut short": data[:-5], "a length past the end": data + b"\x3a\xff\xff\xff\x7f",
            "wire type 3": data + b"\x0b"}[damage]
    with pytest.raises(ValueError):
        closed_list.problem(data)
