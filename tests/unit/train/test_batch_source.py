"""BatchSource's streams: which tasks go to the typed, spoken and video streams."""
from __future__ import annotations

from omnistream.inputs import Processor
from omnistream.train.data import BatchSource


def test_a_training_variant_rides_with_the_image_tasks_typed_and_spoken(tiny_assets):
    source = BatchSource(Processor.from_pretrained(tiny_assets),
                         {"describe": 1.0, "describe_crowded": 3.0, "direction": 1.0, "transcribe_digits": 1.0},
                         batch_size=8, spoken_fraction=0.5, workers=0)
    streams = {name: (mix, per) for name, mix, _, per in source.groups()}
    assert streams["typed"][0] == {"describe": 1.0, "describe_crowded": 3.0}
    assert streams["spoken"][0] == {"describe": 0.5, "describe_crowded": 1.5, "transcribe_digits": 1.0}
    assert streams["video"][0] == {"direction": 1.0}
    assert streams["typed"][1] + streams["spoken"][1] == 8
