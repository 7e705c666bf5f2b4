"""Training pipeline: configs, the trainer, checkpoints, distributed runs and run folders.

```python
from dendrix.train import train, load_run
result = train("fsdd_mlp", "runs/my-run", overrides=["model.kind=lif", "train.epochs=5"])
run = load_run("runs/my-run")          # run.model, run.config, run.info, run.loader("test")
```
"""

from .config import ConfigError, resolve_config
from .run import Run, load_run
from .trainer import Trainer, TrainingDiverged, evaluate, neuron_parameters, spike_rate, train

__all__ = ["train", "Trainer", "TrainingDiverged", "load_run", "Run", "resolve_config", "ConfigError",
           "evaluate", "spike_rate", "neuron_parameters"]
