"""The reference generator written in TensorFlow from docs (docs/architecture.md, "The model"),
as the original system's TF2 code computes it, and frozen as its `save_pb` does: a tf.function
traced at a fixed batch, convert_variables_to_constants_v2, placeholders x1/x2, output Identity.

Its ops are the ones the original's Keras layers trace to: spectral norm as one power iteration
on a stored `u` in every call (so the frozen graph holds W/sigma as a constant subgraph),
Dense = MatMul + BiasAdd, an embedding gather, nearest upsampling, conditional batch norm with
`tf.nn.batch_normalization` on stored statistics, self-attention whose reshapes bake the batch,
a Keras-style batch norm (FusedBatchNormV3) and a stride-1 transposed convolution out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

Z_DIM, EMBED, CLASSES = 100, 32, 10


class SpectralDense(tf.Module):
    """A kernel used as W / sigma, sigma from one power iteration on the stored `u` (the frozen
    graph keeps that computation on constants; the training-time update of `u` is left out)."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> None:
        self.w = tf.Variable(rng.normal(0, scale, shape).astype(np.float32))
        self.u = tf.Variable(rng.normal(0, 1, (1, shape[-1])).astype(np.float32))

    def kernel(self) -> tf.Tensor:
        w = tf.reshape(self.w, [-1, self.w.shape[-1]])
        v = tf.nn.l2_normalize(tf.matmul(self.u, w, transpose_b=True), epsilon=1e-12)
        u = tf.nn.l2_normalize(tf.matmul(v, w), epsilon=1e-12)
        sigma = tf.matmul(tf.matmul(v, w), u, transpose_b=True)
        return self.w / sigma


class CondBatchNorm(tf.Module):
    def __init__(self, rng: np.random.Generator, channels: int, cond: int) -> None:
        self.mean = tf.Variable(rng.normal(0, 0.1, channels).astype(np.float32))
        self.var = tf.Variable(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        self.gamma = tf.Variable(rng.normal(0, 0.2, (cond, channels)).astype(np.float32))
        self.gamma_b = tf.Variable(1 + rng.normal(0, 0.1, channels).astype(np.float32))
        self.beta = tf.Variable(rng.normal(0, 0.2, (cond, channels)).astype(np.float32))
        self.beta_b = tf.Variable(rng.normal(0, 0.1, channels).astype(np.float32))
        self.channels = channels

    def __call__(self, x: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
        gamma = tf.reshape(tf.nn.bias_add(c @ self.gamma, self.gamma_b), [-1, 1, 1, self.channels])
        beta = tf.reshape(tf.nn.bias_add(c @ self.beta, self.beta_b), [-1, 1, 1, self.channels])
        return tf.nn.batch_normalization(x, self.mean, self.var, beta, gamma, 1e-5)


def _conv(x: tf.Tensor, sn: SpectralDense) -> tf.Tensor:
    return tf.nn.conv2d(x, sn.kernel(), 1, "SAME")


def _up(x: tf.Tensor) -> tf.Tensor:
    return tf.image.resize(x, [x.shape[1] * 2, x.shape[2] * 2], method="nearest")


class UpBlock(tf.Module):
    def __init__(self, rng: np.random.Generator, cin: int, cout: int, cond: int) -> None:
        self.bn0 = CondBatchNorm(rng, cin, cond)
        self.conv1 = SpectralDense(rng, (3, 3, cin, cout), 0.1)
        self.bn1 = CondBatchNorm(rng, cout, cond)
        self.conv2 = SpectralDense(rng, (3, 3, cout, cout), 0.1)
        self.skip = SpectralDense(rng, (1, 1, cin, cout), 0.1)

    def __call__(self, x: tf.Tensor, c: tf.Tensor) -> tf.Tensor:
        h = _conv(_up(tf.nn.relu(self.bn0(x, c))), self.conv1)
        h = _conv(tf.nn.relu(self.bn1(h, c)), self.conv2)
        return h + _conv(_up(x), self.skip)


class Attention(tf.Module):
    def __init__(self, rng: np.random.Generator, ch: int) -> None:
        inner = ch // 8
        self.f, self.g, self.h = (SpectralDense(rng, (1, 1, ch, inner), 0.3) for _ in range(3))
        self.o = SpectralDense(rng, (1, 1, inner, ch), 0.3)
        self.biases = [
            tf.Variable(rng.normal(0, 0.1, n).astype(np.float32)) for n in (inner,) * 3 + (ch,)
        ]
        self.gamma = tf.Variable(np.array([0.7], np.float32))

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        def flat(t: tf.Tensor) -> tf.Tensor:
            return tf.reshape(t, [tf.shape(t)[0], tf.shape(t)[1] * tf.shape(t)[2], tf.shape(t)[-1]])

        f, g, h = (
            tf.nn.bias_add(_conv(x, sn), b)
            for sn, b in zip((self.f, self.g, self.h), self.biases, strict=False)
        )
        beta = tf.nn.softmax(tf.matmul(flat(g), flat(f), transpose_b=True), axis=-1)
        v = tf.reshape(tf.matmul(beta, flat(h)), [x.shape[0], x.shape[1], x.shape[2], -1])
        return self.gamma * tf.nn.bias_add(_conv(v, self.o), self.biases[3]) + x


class ReferenceGenerator(tf.Module):
    """G(z [N, 100], y [N]) -> [N, 32, 32, channels] at base width `ch`."""

    def __init__(self, ch: int = 8, channels: int = 1, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        cond = Z_DIM // 4 + EMBED
        self.ch = ch
        self.embed = tf.Variable(rng.uniform(-0.05, 0.05, (CLASSES, EMBED)).astype(np.float32))
        self.dense = SpectralDense(rng, (Z_DIM // 4, 4 * 4 * 4 * ch), 0.1)
        self.dense_b = tf.Variable(rng.normal(0, 0.1, 4 * 4 * 4 * ch).astype(np.float32))
        self.block1 = UpBlock(rng, 4 * ch, 4 * ch, cond)
        self.block2 = UpBlock(rng, 4 * ch, 2 * ch, cond)
        self.attention = Attention(rng, 2 * ch)
        self.block3 = UpBlock(rng, 2 * ch, ch, cond)
        self.bn = [
            tf.Variable(a.astype(np.float32))
            for a in (
                1 + rng.normal(0, 0.1, ch),
                rng.normal(0, 0.1, ch),
                rng.normal(0, 0.1, ch),
                rng.uniform(0.5, 1.5, ch),
            )
        ]
        # the output layer: a stride-1 transposed convolution, kernel [3, 3, out, in]
        self.conv_out = SpectralDense(rng, (3, 3, channels, ch), 0.1)
        self.channels = channels

    def __call__(self, x1: tf.Tensor, x2: tf.Tensor) -> tf.Tensor:
        z0, z1, z2, z3 = tf.split(x1, 4, axis=-1)
        e = tf.gather(self.embed, x2)
        c1, c2, c3 = (tf.concat([z, e], axis=-1) for z in (z1, z2, z3))
        h = tf.nn.bias_add(z0 @ self.dense.kernel(), self.dense_b)
        h = tf.reshape(h, [-1, 4, 4, 4 * self.ch])
        h = self.attention(self.block2(self.block1(h, c1), c2))
        h = self.block3(h, c3)
        scale, offset, mean, var = self.bn
        h, _, _ = tf.compat.v1.nn.fused_batch_norm(
            h, scale, offset, mean, var, epsilon=1e-3, is_training=False
        )
        h = tf.nn.relu(h)
        out_shape = tf.stack([tf.shape(h)[0], 32, 32, self.channels])
        h = tf.nn.conv2d_transpose(h, self.conv_out.kernel(), out_shape, 1, "SAME")
        return tf.sigmoid(h)


def save_pb(generator: tf.Module, batch: int, path: Path) -> Path:
    """The original's save_pb: trace at `batch`, freeze the variables, write the GraphDef."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    func = tf.function(generator.__call__).get_concrete_function(
        tf.TensorSpec([batch, Z_DIM], tf.float32, name="x1"),
        tf.TensorSpec([batch], tf.int32, name="x2"),
    )
    frozen = convert_variables_to_constants_v2(func)
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


def run_pb(path: Path, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """The original's pb_validate: the frozen graph's output on the inputs."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run("Identity:0", {"x1:0": x1, "x2:0": x2})
