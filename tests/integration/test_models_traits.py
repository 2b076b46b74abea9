"""Models declare traits (attention blocks, int8 recipe), not families: quantization picks the recipe from them, an
unknown recipe is an error, a model without declared traits gets them from its graph; the registry imports no
model file and a new family is one module; quantize resolves its model through the one resolver."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deploykit.core.errors import InputError
from deploykit.core.registry import Registry
from deploykit.models import MODELS, ModelTraits, families, get_cfg, list_models, register_model
from deploykit.models.traits import CNN, RECIPES, VIT, get_recipe
from tests.conftest import REPO, assert_clean_error


# ------------------------------------------------------------------------------------------- declarations
def test_every_registered_model_declares_traits_with_a_known_recipe():
    for cfg in list_models():
        assert isinstance(cfg.traits, ModelTraits), cfg.name
        assert get_recipe(cfg.traits.recipe).name == cfg.traits.recipe
    # the built-in declarations: ViTs have attention blocks and the ViT recipe, CNNs and ParC the CNN recipe
    assert get_cfg("deit_tiny").traits == ModelTraits(attention=True, recipe="vit")
    assert get_cfg("mobilevit_s").traits == ModelTraits(attention=True, recipe="vit")
    assert get_cfg("resnet18").traits == ModelTraits(attention=False, recipe="cnn")
    assert get_cfg("parc_net_s").traits == ModelTraits(attention=False, recipe="cnn")
    assert get_cfg("parc_net_s").family == "parc"  # the family stays a label
    assert families() == ["cnn", "vit", "parc"]


def test_recipes_hold_what_quantization_needs():
    assert set(RECIPES.names()) >= {"cnn", "vit"}
    assert "Relu" in CNN.op_types and "Add" in CNN.op_types and not CNN.transformer
    assert "Add" not in VIT.op_types and "MatMul" in VIT.op_types and VIT.transformer
    assert CNN.softmax == VIT.softmax == "int8"


def test_an_unknown_recipe_is_refused_at_registration():
    with pytest.raises(InputError, match="unknown quantization recipe 'cnnn'; did you mean 'cnn'"):
        register_model("_never_registered", family="cnn", traits=ModelTraits(attention=False, recipe="cnnn"))
    assert "_never_registered" not in MODELS
    with pytest.raises(TypeError, match="ModelTraits"):
        register_model("_never_registered", family="cnn", traits="cnn")
    with pytest.raises(ValueError, match="attention must be True or False"):
        ModelTraits(attention="yes", recipe="cnn")


def test_make_plan_takes_the_recipe(resnet18_64, tmp_path):
    import onnx

    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.ort_qdq import make_plan, pre_process

    pre_process(resnet18_64.path, tmp_path / "pre.onnx")
    pre = onnx.load(str(tmp_path / "pre.onnx"))
    q = QuantizeConfig(calib_data="synthetic", reduce_range=False)
    cnn = make_plan(pre, CNN, q, family="cnn")
    vit = make_plan(pre, VIT, q)
    assert cnn.op_types == list(CNN.op_types) and cnn.recipe == "cnn" and cnn.softmax == "none"
    assert vit.op_types == list(VIT.op_types) and vit.recipe == "vit"
    assert cnn.describe()["recipe"] == "cnn" and cnn.describe()["traits_from"] == "declared"
    with pytest.raises(TypeError, match="QuantRecipe"):
        make_plan(pre, "cnn", q)  # a family name is no longer a recipe


# ------------------------------------------------------------------------------------------- where traits come from
def _copy(res, dest: Path, *, manifest=None, edit=None) -> Path:
    """Copy an artifact's .onnx to ``dest``; with ``manifest`` its manifest too, changed by ``edit(dict)``."""
    from deploykit.export import artifacts

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(res.path, dest)
    if manifest:
        m = json.loads(artifacts.manifest_path(res.path).read_text())
        if edit:
            edit(m)
        artifacts.manifest_path(dest).write_text(json.dumps(m))
    return dest


def _source(ref):
    from deploykit.quantize.pipeline import _resolve_source

    return _resolve_source(str(ref), batch=1, resolution=None, export=None, models_dir=Path("unused"),
                           say=lambda m: None)


def test_declared_traits_come_from_the_manifest(resnet18_64, deit_tiny_64):
    from deploykit.export.source import ResolvedModel

    for res, recipe in ((resnet18_64, "cnn"), (deit_tiny_64, "vit")):
        assert res.manifest["source"]["traits"] == {"attention": recipe == "vit", "recipe": recipe}
        src = _source(res.path)
        assert isinstance(src.model, ResolvedModel)  # quantize asks the one resolver
        assert src.traits_from == "declared" and src.recipe.name == recipe and src.warnings == []
        assert src.has_attention is (recipe == "vit")


def test_a_file_without_a_manifest_gets_traits_from_its_graph(resnet18_64, deit_tiny_64, tmp_path):
    for res, recipe in ((resnet18_64, "cnn"), (deit_tiny_64, "vit")):
        src = _source(_copy(res, tmp_path / f"{recipe}" / "model.onnx"))
        assert src.traits_from == "graph" and src.recipe.name == recipe and src.family == recipe
        assert src.traits == ModelTraits(attention=recipe == "vit", recipe=recipe)
        joined = " ".join(src.warnings)
        # no manifest, but the export's own metadata says how to feed it (not ImageNet's default, silently)
        assert src.preprocess_source == "metadata" and "ImageNet" not in joined
        assert f"quantized with the '{recipe}' recipe" in joined
        assert ("attention blocks found" if recipe == "vit" else "attention blocks not found") in joined


def test_a_manifest_from_before_traits_takes_them_from_the_registry(deit_tiny_64, tmp_path):
    def legacy(m):
        del m["source"]["traits"]

    src = _source(_copy(deit_tiny_64, tmp_path / "old" / "deit.onnx", manifest=True, edit=legacy))
    assert src.traits == get_cfg("deit_tiny").traits and src.traits_from == "declared"


def test_an_unknown_recipe_in_a_manifest_is_a_clear_error_not_the_cnn_recipe(resnet18_64, tmp_path, cli_runner):
    from deploykit.cli import cli

    def unknown(m):
        m["source"]["traits"]["recipe"] = "transformer-xl"

    path = _copy(resnet18_64, tmp_path / "odd" / "r18.onnx", manifest=True, edit=unknown)
    with pytest.raises(InputError, match="unknown quantization recipe 'transformer-xl'.*known recipes: cnn, vit"):
        _source(path)
    r = cli_runner.invoke(cli, ["quantize", str(path), "--calib-data", "synthetic"])
    assert_clean_error(r, 2, "unknown quantization recipe", "transformer-xl")

    def malformed(m):
        m["source"]["traits"] = {"recipe": "cnn"}

    # a manifest that fails its schema is not trusted at all: as if absent, the traits come from the graph
    src = _source(_copy(resnet18_64, tmp_path / "bad" / "r18.onnx", manifest=True, edit=malformed))
    assert src.traits_from != "declared" and src.recipe.name == "cnn"


def test_declared_attention_the_graph_does_not_have_is_reported(resnet18_64, tmp_path):
    def wrong(m):
        m["source"]["traits"] = {"attention": True, "recipe": "vit"}

    src = _source(_copy(resnet18_64, tmp_path / "wrong" / "r18.onnx", manifest=True, edit=wrong))
    assert src.recipe.name == "vit" and src.traits_from == "declared"  # the declaration is followed ...
    assert any("declares attention blocks but none were found" in w for w in src.warnings)  # ... and questioned


def test_quantizing_an_int8_file_is_refused(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.uint8), "z")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], inits)
    path = tmp_path / "q.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(InputError, match="already quantized"):
        _source(path)


# ------------------------------------------------------------------------------------------- registry, packages
def test_the_registry_loader_still_works_and_namespaces_resolve_on_demand():
    calls = []
    reg: Registry[int] = Registry("thing", loader=lambda: (calls.append(1), reg.add("a", 1)))
    assert calls == [] and reg.names() == ["a"] and reg.get("a") == 1 and calls == [1]
    resolved = []
    reg.add_namespace("ns", lambda rest: resolved.append(rest) or len(rest), lambda: ["xy", "xyz", "q"])
    assert "ns:xyz" in reg and "zz:xyz" not in reg and "ns:" not in reg and None not in reg
    assert reg.get("ns:xyz") == 3 and reg.get("ns:xyz") == 3 and resolved == ["xyz"]  # resolved once, cached
    assert reg.names() == ["a"]  # namespaced names are not listed
    assert reg.match("ns:xy*") == ["ns:xy", "ns:xyz"] and reg.match("?") == ["a"]
    with pytest.raises(ValueError, match="namespace"):
        reg.add("ns:b", 2)
    with pytest.raises(InputError, match="unknown thing 'b'"):
        reg.get("b")


def test_importing_the_models_registers_them_without_torch():
    code = ("import sys\nimport deploykit.models as m\n"
            "assert len(m.list_models()) >= 17, len(m.list_models())\n"
            "assert 'timm:resnet10t' in m.MODELS and 'tv:resnet18' in m.MODELS\n"
            "heavy = [k for k in ('torch', 'timm', 'torchvision', 'numpy') if k in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


PLUGIN = '''
"""A new family in one module: a model with its own int8 recipe (linear layers only)."""
from deploykit.models import ModelTraits, QuantRecipe, register_model, register_recipe

register_recipe(QuantRecipe("linear_only", op_types=("Gemm", "MatMul"), description="linear layers only"))


@register_model("tiny_mlp", family="mlp", traits=ModelTraits(attention=False, recipe="linear_only"),
                source="test", arch="4x4 patch conv + 2 linear layers", min_resolution=16)
def tiny_mlp(resolution):
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 16, 4, 4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10))
'''


@pytest.mark.slow
def test_a_new_family_with_its_own_recipe_is_one_module(tmp_path):
    """The recipe the model declares decides what is quantized: only Gemm/MatMul, the Conv stays float."""
    (tmp_path / "mlp_family.py").write_text(textwrap.dedent(PLUGIN))
    out = tmp_path / "models"
    code = textwrap.dedent("""
        import sys
        import mlp_family
        from deploykit.cli import cli
        cli.main(sys.argv[1:])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}

    def run(*args):
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)

    p = run("models", "--family", "mlp", "--json", "--models-dir", str(out))
    assert p.returncode == 0, p.stderr
    assert [r["name"] for r in json.loads(p.stdout)] == ["tiny_mlp"]
    p = run("quantize", "tiny_mlp", "--resolution", "32", "--calib-data", "synthetic", "--calib-size", "4",
            "--fidelity-samples", "4", "--no-verify", "--json", "--models-dir", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    plan = rep["report"]["plan"]
    assert plan["recipe"] == "linear_only" and plan["family"] == "mlp" and plan["traits_from"] == "declared"
    assert plan["op_types"] == ["Gemm", "MatMul"]
    import onnx

    g = onnx.load(rep["path"]).graph
    producer = {o: n for n in g.node for o in n.output}
    conv = [n for n in g.node if n.op_type == "Conv"]
    linear = [n for n in g.node if n.op_type in ("Gemm", "MatMul")]
    assert conv and linear
    assert all(producer.get(n.input[0]) is None or producer[n.input[0]].op_type != "DequantizeLinear" for n in conv)
    assert all(producer[n.input[0]].op_type == "DequantizeLinear" for n in linear)
