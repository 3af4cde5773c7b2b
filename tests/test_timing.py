"""Where the time goes: sections are exclusive (nested ones pause the outer), so a node's parts add up to its wall."""

import time

from wrapperlab import timing


def test_nested_sections_add_up_to_the_wall_time():
    with timing.collect() as split:
        with timing.section("train"):
            time.sleep(0.05)
            with timing.section("eval"):
                time.sleep(0.03)
            time.sleep(0.02)
        time.sleep(0.01)
    assert 0.069 <= split["train"] < 0.2 and 0.029 <= split["eval"] < 0.15  # eval not counted in train
    parts = sum(v for k, v in split.items() if k != "wall")
    assert abs(parts - split["wall"]) < 0.005 and split["other"] >= 0.009


def test_sections_outside_a_collection_are_free_and_collections_nest():
    with timing.section("train"):  # nothing open: no bookkeeping, no error
        pass
    with timing.collect() as outer:
        with timing.section("io"):
            with timing.collect() as inner:
                with timing.section("data"):
                    time.sleep(0.01)
    assert inner["data"] >= 0.009 and "data" not in outer  # a node's collection is its own
