"""int8 fidelity on a realistic encoder: ImageNet MobileNetV2 on real tf_flowers photos.

Needs ../shared (skipped without it; CI has it). An untrained random tiny tower is no test of
int8: its embeddings differ between images by less than int8's rounding, so quantisation looks
arbitrarily bad. Here the backbone is the real one at 96 px with a random projection head.
Thresholds: the 96 px smoke model measured centred cosine 0.964 and top-5 agreement 0.83
(README); 0.9 and 0.7 leave room for calibration-sample noise while catching a broken
conversion (wrong input scale, float ops, a missing rescaling) which drops both far lower.
"""

import numpy as np
import pytest

from conftest import FLOWERS, WEIGHTS

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (FLOWERS.is_dir() and WEIGHTS.is_file()), reason="needs ../shared data and weights"),
]


def test_int8_embeddings_agree_with_keras_on_real_photos(tmp_path):
    from edge.encoder import Encoder
    from edge.manifest import InputSpec, Manifest, OutputSpec, Verification, file_sha256
    from edge.metrics import l2_normalize
    from edge.quant import params_of
    from edge.interpreter import make_interpreter
    from export.convert import fixed_batch_model, to_tflite
    from train.data import cap_per_class, list_images, load_images
    from train.evaluate import nearest_neighbours
    from train.model import build_tower, export_encoder

    records, classes = list_images(FLOWERS)
    records = cap_per_class(records, 24)
    loaded, _ = load_images(FLOWERS, records, classes, 96)
    tower = build_tower(96, 64, str(WEIGHTS))
    keras_embeddings = np.asarray(tower.encoder.predict(loaded.clean.astype(np.float32), verbose=0))
    calibration = loaded.clean[::3].astype(np.float32)
    model = fixed_batch_model(export_encoder(tower.encoder))
    path = tmp_path / "encoder.tflite"
    path.write_bytes(to_tflite(model, "int8", lambda: iter(calibration)))

    details = make_interpreter(path)
    inp, out = details.get_input_details()[0], details.get_output_details()[0]
    manifest = Manifest(
        model_sha256=file_sha256(path), quantization="int8",
        input=InputSpec(96, 96, "uint8", *params_of(inp)), output=OutputSpec(64, "int8", *params_of(out)),
        verification=Verification(0.5, "none"),
    )
    encoder = Encoder(path, manifest)
    device = np.stack([encoder.embed(FLOWERS / r.path) for r in loaded.records])

    mean = keras_embeddings.mean(axis=0)
    centred = np.sum(l2_normalize(keras_embeddings - mean) * l2_normalize(device - mean), axis=1)
    top_float, _ = nearest_neighbours(keras_embeddings, keras_embeddings, 6)
    top_device, _ = nearest_neighbours(device, device, 6)
    agreement = np.mean([len(set(a[1:]) & set(b[1:])) / 5 for a, b in zip(top_float, top_device)])
    assert centred.mean() > 0.9, centred.mean()
    assert agreement > 0.7, agreement
