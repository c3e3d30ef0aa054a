"""The bench on several workers with tf.distribute: who does which share, and how the shares meet.

`--strategy multiworker` runs one process per worker, each with its own TF_CONFIG. Each worker
extracts the features of its own interleaved share of the image files (so no image is decoded
twice), and one all-gather over the strategy's collectives puts the rows back in file order on
every worker: the workers need no shared filesystem, and each ends with the array, and the cache
entry, that a single machine would have made. The head then trains under the strategy, every
replica on its share of each batch. Only the chief writes into --out.

Every worker must do the same collective steps in the same order, so whatever decides them (the
backbones, the data, what --resume skips, what is cached) is agreed on first. A collective waits
for all workers at most `timeout` seconds: a worker that dies makes the others stop with one
line instead of hanging.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from collections.abc import Sequence

import numpy as np

from zoo.errors import ZooError

#: Seconds a collective step waits for the other workers before the run stops (--worker-timeout).
DEFAULT_TIMEOUT = 300.0
#: Set once this process has joined a cluster: from then on only exit_now() ends it.
joined = False


def make_strategy(name: str, timeout: float = DEFAULT_TIMEOUT):
    """The tf.distribute strategy that `--strategy` names; create it before any other TF work."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        global joined
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        joined = True
        return strategy
    return tf.distribute.get_strategy()


def local_cluster(count: int) -> list[str]:
    """TF_CONFIG for each of `count` workers on this machine, on free ports: for trying a
    cluster out, and for the tests and benchmarks that do."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("localhost", 0))
        addresses = [f"localhost:{each.getsockname()[1]}" for each in sockets]
    finally:
        for each in sockets:
            each.close()
    return [
        json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        for index in range(count)
    ]


def worker(strategy) -> tuple[int, int]:
    """(this worker's index, the number of workers): the chief (or worker 0) is index 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 0, 1
    cluster = resolver.cluster_spec().as_dict()
    tasks = [(job, index) for job in ("chief", "worker") for index in range(len(cluster.get(job, ())))]
    if len(tasks) < 2:
        return 0, 1
    return tasks.index((resolver.task_type, resolver.task_id)), len(tasks)


def is_chief(strategy) -> bool:
    return worker(strategy)[0] == 0


def share(files: Sequence[str], strategy) -> tuple[str, ...]:
    """This worker's files: every n-th, starting at its index."""
    index, count = worker(strategy)
    return tuple(files[index::count])


def split_over_devices(strategy, forward):
    """`forward` with each batch split over this worker's replicas (every local GPU under
    `mirrored`, or `multiworker` on a node with several) and the rows put back in order."""
    local = strategy.num_replicas_in_sync // worker(strategy)[1]
    if local == 1:
        return forward

    def split(batch):
        parts = strategy.experimental_distribute_values_from_function(
            lambda context: batch[context.replica_id_in_sync_group % local :: local]
        )
        results = [np.asarray(part) for part in strategy.experimental_local_results(strategy.run(forward, (parts,)))]
        rows = np.empty((len(batch), *results[0].shape[1:]), results[0].dtype)
        for index, part in enumerate(results[: len(batch)]):  # a replica given no rows has nothing to add
            rows[index::local] = part
        return rows

    return split


def _all_gather(strategy, value: np.ndarray) -> np.ndarray:
    """Every worker's `value`, stacked in worker order (the chief's first), on every worker."""
    blocks = _replica_gather(strategy, value)
    order = _replica_gather(strategy, np.asarray([worker(strategy)[0]]))[:, 0]
    return blocks[np.argsort(order)]


def _replica_gather(strategy, value: np.ndarray) -> np.ndarray:
    """One all-gather: each worker's `value`, stacked in the collective's replica order."""
    import tensorflow as tf

    gathered = strategy.run(
        lambda x: tf.distribute.get_replica_context().all_gather(x, axis=0),
        args=(tf.constant(value),),
    )
    everything = np.asarray(strategy.experimental_local_results(gathered)[0])
    local_replicas = strategy.num_replicas_in_sync // worker(strategy)[1]
    return everything.reshape(-1, *value.shape)[::local_replicas]  # one block per replica: each worker's first


def gather(strategy, rows: np.ndarray, total: int) -> np.ndarray:
    """All `total` rows in file order, from each worker's rows of its `share`."""
    count = worker(strategy)[1]
    if count == 1:
        return rows
    largest = -(-total // count)
    padded = np.zeros((largest, *rows.shape[1:]), rows.dtype)
    padded[: len(rows)] = rows
    blocks = _all_gather(strategy, padded)
    result = np.empty((total, *rows.shape[1:]), rows.dtype)
    for each in range(count):
        result[each::count] = blocks[each, : len(range(each, total, count))]
    return result


def chief_says(strategy, flags: Sequence[bool]) -> list[bool]:
    """The chief's `flags` on every worker (say, what --resume skips: only the chief reads --out)."""
    if worker(strategy)[1] == 1:
        return list(flags)
    return [bool(flag) for flag in _all_gather(strategy, np.asarray(flags, np.int32))[0]]


def each(strategy, count: int) -> list[int]:
    """Every worker's `count`, in worker order."""
    if worker(strategy)[1] == 1:
        return [count]
    return [int(value) for value in _all_gather(strategy, np.asarray([count]))[:, 0]]


def everyone(strategy, flag: bool) -> bool:
    """Whether `flag` holds on every worker (say, that each has the features cached)."""
    if worker(strategy)[1] == 1:
        return flag
    return bool(_all_gather(strategy, np.asarray([flag], np.int32)).all())


def agree(strategy, what: str, value: str) -> None:
    """Stop with one line unless every worker has the same `value`: their steps must line up."""
    if worker(strategy)[1] == 1:
        return
    digest = np.frombuffer(hashlib.sha256(value.encode()).digest()[:8], np.int32)
    seen = _all_gather(strategy, digest)
    if not (seen == seen[0]).all():
        raise ZooError(f"the workers differ in {what}; start every worker with the same command, data and zoo version")


def lost_worker(exc: BaseException) -> ZooError | None:
    """The one line for a collective that failed because another worker died or stalled."""
    import tensorflow as tf

    lost = (
        tf.errors.DeadlineExceededError,
        tf.errors.UnavailableError,
        tf.errors.CancelledError,
        tf.errors.AbortedError,
    )
    if not isinstance(exc, lost):
        return None
    return ZooError(
        f"another worker stopped answering ({type(exc).__name__}: a collective step waited longer than "
        "--worker-timeout, or a peer is gone); every worker stops: restart them all with --resume"
    )


def exit_now(code: int) -> None:
    """End the process at once: TensorFlow's collective threads can keep a process that joined a
    cluster alive after a lost worker, so a normal exit could hang."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def train_head(strategy, train_x, train_y, num_classes: int, settings, callbacks=()):
    """The head of zoo.recipe.train_head (same layer, optimizer, loss, batches) trained in an
    explicit loop, because Keras 3's fit cannot run under MultiWorkerMirroredStrategy
    (keras-team/keras#20585). Every worker shuffles alike from the seed; each replica takes its
    share of every batch; the optimizer sums the replicas' gradients (of the loss summed over the
    replica's rows and divided by the batch size), so the step is the single-machine step.
    `callbacks` (Keras callbacks: TensorBoard, progress) see each epoch's mean loss."""
    import keras
    import tensorflow as tf

    from zoo.models import classification_head

    with strategy.scope():
        head = classification_head(train_x.shape[1], num_classes)
        optimizer = keras.optimizers.Adam(settings.learning_rate)
        optimizer.build(head.trainable_variables)
    loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    head.optimizer = optimizer  # what a TensorBoard callback reads the learning rate from

    def replica_step(x, y, batch):
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(loss(y, head(x, training=True))) / batch
        optimizer.apply_gradients(zip(tape.gradient(total, head.trainable_variables), head.trainable_variables))
        return total

    @tf.function(reduce_retracing=True)
    def step(x, y, batch):
        return strategy.reduce("SUM", strategy.run(replica_step, args=(x, y, batch)), axis=None)

    def my_share(array):
        return strategy.experimental_distribute_values_from_function(
            lambda context: array[context.replica_id_in_sync_group :: context.num_replicas_in_sync]
        )

    train_x, train_y = np.asarray(train_x), np.asarray(train_y)
    shuffle = np.random.default_rng(settings.seed)
    epochs = keras.callbacks.CallbackList(list(callbacks), model=head)
    epochs.on_train_begin()
    for epoch in range(settings.epochs):
        epochs.on_epoch_begin(epoch)
        order = shuffle.permutation(len(train_x))
        total = 0.0
        for rows in np.split(order, range(settings.batch_size, len(order), settings.batch_size)):
            size = tf.constant(float(len(rows)))
            total += float(step(my_share(train_x[rows]), my_share(train_y[rows]), size)) * len(rows)
        epochs.on_epoch_end(epoch, {"loss": total / len(train_x)})
    epochs.on_train_end()
    return head
