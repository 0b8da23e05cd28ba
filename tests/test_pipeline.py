import numpy as np
import pytest
from absl import flags

from tests.data_helpers import assert_resumes_through_orbax, assert_same_batches, first, ids
from xmodal.core import datasets as sources
from xmodal.core.input import eval_arrays, train_loader
from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.data.tokenizer import ByteTokenizer

BATCH = 16


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("data"))
    return sources.data_source("emoji/tiny", "train", data_dir)


# Codepoints are unique per record, so the decoded text identifies the example.
ID_TRANSFORM = ImageTextTransform(image_size=32, max_text_len=64, text_field="codepoints")


def loader(source, seed=0, shard_index=0, shard_count=1, worker_count=0, num_epochs=None,
           global_batch_size=BATCH):
    return train_loader(source, ID_TRANSFORM, global_batch_size=global_batch_size, seed=seed,
                        shard_index=shard_index, shard_count=shard_count,
                        worker_count=worker_count, num_epochs=num_epochs)


def test_batch_layout(source):
    batch = next(iter(loader(source)))
    assert batch["image"].shape == (BATCH, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["text"].shape == (BATCH, 64) and batch["text"].dtype == np.int32
    assert batch["label"].shape == (BATCH,) and batch["label"].dtype == np.int32
    assert len(set(ids(batch))) == BATCH


def test_same_seed_same_batches_other_seed_different(source):
    a = first(iter(loader(source, seed=3)), 3)
    b = first(iter(loader(source, seed=3)), 3)
    c = first(iter(loader(source, seed=4)), 3)
    assert_same_batches(a, b)
    assert [ids(x) for x in a] != [ids(x) for x in c]


def test_workers_do_not_change_batches(source):
    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    in_process = first(iter(loader(source, seed=7, worker_count=0)), 3)
    it = iter(loader(source, seed=7, worker_count=2))
    with_workers = first(it, 3)
    it.close()  # stops the worker processes now rather than at garbage collection
    assert_same_batches(in_process, with_workers)
    # Copied out of grain's shared memory, so a device array made from a batch cannot pin
    # (and leak) a segment.
    from grain.multiprocessing import SharedMemoryArray
    assert all(type(v) is np.ndarray and not isinstance(v, SharedMemoryArray)
               for b in with_workers for v in b.values())


def test_shards_are_disjoint(source):
    seen = []
    for shard in (0, 1):
        batches = list(loader(source, shard_index=shard, shard_count=2, num_epochs=1,
                              global_batch_size=2 * 8))
        assert batches and all(b["text"].shape[0] == 8 for b in batches)
        seen.append([i for b in batches for i in ids(b)])
    assert len(set(seen[0])) == len(seen[0]) and len(set(seen[1])) == len(seen[1])
    assert not set(seen[0]) & set(seen[1])
    # each shard holds len // 2 records; full batches of 8 cover all but the remainder
    assert len(seen[0]) == len(seen[1]) == (len(source) // 2) // 8 * 8


def test_shards_together_make_the_single_process_batch(source):
    single = first(iter(loader(source, seed=2, global_batch_size=16)), 3)
    shards = [first(iter(loader(source, seed=2, shard_index=i, shard_count=2,
                                global_batch_size=16)), 3) for i in (0, 1)]
    for step in range(3):
        assert sorted(ids(shards[0][step]) + ids(shards[1][step])) == sorted(ids(single[step]))


def test_one_epoch_visits_every_record_once(source):
    batches = list(loader(source, num_epochs=1))
    visited = [i for b in batches for i in ids(b)]
    assert len(visited) == len(source) // BATCH * BATCH == len(set(visited))


def test_state_resumes_at_next_batch(source):
    k = 3
    reference = first(iter(loader(source, seed=11)), k + 2)
    it = iter(loader(source, seed=11))
    first(it, k)
    state = it.get_state()
    resumed = iter(loader(source, seed=11))
    resumed.set_state(state)
    assert_same_batches(first(resumed, 2), reference[k:k + 2])


def test_state_round_trips_through_orbax(source, tmp_path):
    assert_resumes_through_orbax(lambda: loader(source, seed=5), 2, 1, tmp_path / "ckpt")


def test_a_changed_saved_position_is_refused_and_an_unchecked_one_restores(source, tmp_path):
    import json

    import orbax.checkpoint as ocp

    from xmodal.core.input import iterator_checkpoint_args
    it = iter(loader(source, seed=5))
    first(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        manager.save(2, args=ocp.args.Composite(data=iterator_checkpoint_args(it)))
        manager.wait_until_finished()
    (path,) = (tmp_path / "ckpt" / "2" / "data").glob("process_*.json")
    saved = json.loads(path.read_text())
    assert set(saved) == {"iterator", "sha256"}

    def restore():
        resumed = iter(loader(source, seed=5))
        with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
            manager.restore(2, args=ocp.args.Composite(
                data=iterator_checkpoint_args(resumed, restore=True)))
        return resumed

    edited = json.loads(json.dumps(saved).replace('"next_index": 2', '"next_index": 3'))
    assert edited != saved
    path.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="differs from its checksum"):
        restore()
    # A position saved before the checksum existed (grain's state alone) restores as it is.
    path.write_text(json.dumps(saved["iterator"]))
    reference = first(iter(loader(source, seed=5)), 3)
    assert_same_batches(first(restore(), 1), reference[2:3])


def test_batch_size_must_divide_over_shards(source):
    with pytest.raises(ValueError, match="not divisible by shard_count 3"):
        loader(source, shard_count=3, global_batch_size=16)
    with pytest.raises(ValueError, match="lower global_batch_size"):
        loader(source, global_batch_size=10_000)


def test_transform_resizes_tokenizes_and_labels(source):
    record = source[0]
    out = ImageTextTransform(image_size=16, max_text_len=24).map(record)
    assert out["image"].shape == (16, 16, 3) and out["image"].dtype == np.uint8
    np.testing.assert_array_equal(out["text"], ByteTokenizer(24).encode(record["name"]))
    assert out["label"].dtype == np.int32 and out["label"] == record["group"]
    same_size = ImageTextTransform(image_size=32, max_text_len=24).map(record)
    np.testing.assert_array_equal(same_size["image"], record["image"])


def test_empty_caption_encodes(source):
    record = dict(source[0], name=b"")
    out = ImageTextTransform(image_size=32, max_text_len=8).map(record)
    np.testing.assert_array_equal(out["text"], [1, 2, 0, 0, 0, 0, 0, 0])


def test_missing_field_names_the_fields(source):
    with pytest.raises(KeyError, match="no field 'caption'.*name_fr"):
        ImageTextTransform(32, 16, text_field="caption").map(source[0])


def test_eval_arrays_in_source_order(source):
    transform = ImageTextTransform(image_size=32, max_text_len=32)
    arrays = eval_arrays(source, transform)
    assert arrays["image"].shape == (len(source), 32, 32, 3)
    tok = ByteTokenizer(32)
    for i in (0, 1, len(source) - 1):
        np.testing.assert_array_equal(arrays["text"][i], tok.encode(source[i]["name"]))
        assert arrays["label"][i] == source[i]["group"]
    head = eval_arrays(source, transform, max_examples=5)
    assert head["text"].shape == (5, 32)
    np.testing.assert_array_equal(head["image"], arrays["image"][:5])


class CountingSource:
    """The real source, counting how its records are asked for."""

    def __init__(self, source):
        self.source, self.single, self.batched = source, 0, 0

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        self.single += 1
        return self.source[index]

    def _getitems(self, indices):
        self.batched += 1
        return self.source._getitems(indices)


def test_a_batch_is_one_batched_read_and_the_same_batch_as_grains(source):
    import grain
    counting = CountingSource(source)
    ours = first(iter(train_loader(counting, ID_TRANSFORM, global_batch_size=8, seed=5,
                                   shard_index=1, shard_count=2, worker_count=0)), 3)
    # Three batches (plus what the prefetch reads ahead), each one call, no single reads.
    assert counting.single == 0 and counting.batched >= 3
    records = grain.MapDataset.source(source).shuffle(seed=5).repeat(None)[1::2]
    theirs = records.map(ID_TRANSFORM).batch(4, drop_remainder=True)
    assert_same_batches(ours, [theirs[i] for i in range(3)])


def test_cache_raw_reads_the_split_once_and_gives_the_same_batches_and_positions(source):
    from xmodal.core.input import InMemory
    counting = CountingSource(source)
    held = InMemory(counting)
    assert (counting.batched, counting.single) == (1, 0)        # one read of the whole split
    theirs, ours = iter(loader(source, seed=9)), iter(loader(held, seed=9))
    assert_same_batches(first(ours, 4), first(theirs, 4))
    assert (counting.batched, counting.single) == (1, 0)        # the batches read memory only
    assert ours.get_state() == theirs.get_state()
