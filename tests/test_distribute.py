"""tf.distribute: training under MirroredStrategy over two logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so this runs in a subprocess.
"""

import json
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT, make_class_folder
from test_train_smoke import TINY

SCRIPT = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from train.run import make_strategy
    strategy = make_strategy("mirrored")
    print("REPLICAS", strategy.num_replicas_in_sync, flush=True)
    from train.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    data = make_class_folder(tmp_path / "data", per_class=8, size=40)
    run = tmp_path / "run"
    argv = ["--data-dir", str(data), "--run-dir", str(run), "--strategy", "mirrored", *TINY]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert json.loads((run / "config.json").read_text())["strategy"] == "mirrored"
    assert 0.0 <= metrics["trained"]["retrieval"]["precision@5"] <= 1.0
