"""The host's side of greedy decoding on the device (:mod:`maxwhisper_lib.engine.graphs.loop`).

Per window the host uploads the prompt once and runs the start graph; then per token it only
asks for the step graph again, with the very same buffers, uploading nothing and waiting for
nothing. It reads the chosen tokens back to learn when every sequence has ended:

* on the CPU after every step (the step's tokens are already in host memory);
* on a GPU every :data:`READ_EVERY` steps (``GreedyLoop.read_every``), without blocking: the
  tokens are copied into pinned host memory behind the steps already queued, an event marks the
  copy, and the host keeps queueing steps until the event is ready. Steps queued after every sequence ended only repeat
  end-of-text, which changes nothing (tokens, sums), so stopping late is harmless; the step
  limit is never passed.

On a GPU the step graph is captured once per batch size (``Model.capture``) and replayed per
token (``Model.replay``: no host code at all). A captured graph reads fixed addresses, so the
buffers it runs on belong to the model, one :class:`Workspace` per batch size, and each window's
cross-attention keys/values and settings are copied into them (device to device) first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from max.driver import Buffer, DeviceEvent
from max.dtype import DType

from . import runtime
from .graphs.loop import history_width

if TYPE_CHECKING:
    from .model import MaxDecoderSession, MaxWhisper

log = logging.getLogger(__name__)

READ_EVERY = 8
"""GPU: steps queued between two read-backs of the chosen tokens."""
MAX_PENDING = 2
"""GPU: read-backs in flight before the host waits for the oldest (how far it runs ahead)."""
MAX_WORKSPACES = 4
"""GPU: batch sizes whose buffers and captured graph are kept."""


@dataclass
class GreedyResult:
    """A window batch's greedy decode: the token history ``(batch, length)`` (prompt first), the
    summed log-probabilities ``(batch,)`` and the no-speech probabilities ``(batch,)``."""

    tokens: np.ndarray
    sum_logprobs: np.ndarray
    no_speech_probs: np.ndarray


@dataclass
class Workspace:
    """The buffers one batch size decodes in: state (:data:`~maxwhisper_lib.engine.graphs.loop.STATE`),
    the later steps' mask, the settings, cross keys/values and caches; on a GPU, the step
    graph captured on them and its output."""

    batch: int
    state: list[Buffer]
    mask: Buffer
    settings: Buffer
    cross: list[Buffer]
    caches: list[Buffer]
    captured: list[Buffer] | None = None
    in_use: bool = False
    pinned: list[Buffer] = field(default_factory=list)


@dataclass
class Started:
    """A window batch after its start graph: the workspace, the step graph's inputs, the
    no-speech probabilities (on the device) and the start graph's uploaded inputs, held while
    it may still be queued."""

    space: Workspace
    inputs: list[Buffer]
    no_speech: Buffer
    keep: list


def _upload(destination: Buffer, array: np.ndarray, keep: list) -> None:
    """Queue a copy of ``array`` into ``destination``; the copy runs later, so its source is
    kept in ``keep`` until the device has been synchronised."""
    source = Buffer.from_numpy(np.ascontiguousarray(array))
    keep.append(source)
    destination.inplace_copy_from(source)


class GreedyLoop:
    """Greedy decoding on the device for one :class:`~maxwhisper_lib.engine.model.MaxWhisper`."""

    def __init__(self, model: MaxWhisper, capture: bool | None = None) -> None:
        self.model = model
        self.device = runtime.get_device(model.device_name)
        self.capture = (not self.device.is_host) if capture is None else capture
        """Whether the step graph is captured and replayed (a GPU; the CPU has no capture)."""
        self.read_every = 1 if self.device.is_host else READ_EVERY
        """Steps between read-backs of the tokens: on the CPU after each step, where they are
        in host memory already (more works there too: the tests use it)."""
        self.drop_ended = True
        """CPU: sequences that have ended leave the batch (:meth:`_steps_on_host`); off, every
        row runs to the last step (the same tokens and sums; tests compare the two)."""
        self.workspaces: OrderedDict[int, Workspace] = OrderedDict()
        self._ids: Buffer | None = None
        self.capture_failed: str | None = None

    @property
    def ids(self) -> Buffer:
        """The token ids ``0 .. n_vocab - 1`` on the device (uploaded once)."""
        if self._ids is None:
            self._ids = self.model.to_device(np.arange(self.model.dims.n_vocab, dtype=np.int64))
        return self._ids

    # -----------------------------------------------------------------------------------------

    def run(
        self,
        session: MaxDecoderSession,
        initial: np.ndarray,
        sot_index: int,
        steps: int,
        first_mask: np.ndarray,
        later_mask: np.ndarray,
        settings: np.ndarray,
    ) -> GreedyResult:
        """Decode greedily from the prompts ``initial (batch, n_prompt)`` for at most ``steps``
        tokens, or until every sequence has ended."""
        n_prompt = initial.shape[1]
        steps = min(steps, self.model.dims.n_text_ctx + 1 - n_prompt)
        if steps < 1:
            raise ValueError(f"a prompt of {n_prompt} tokens leaves no room to decode")
        start = self.start(session, initial, sot_index, first_mask, later_mask, settings)
        eot = int(settings[0])
        try:
            if self.read_every == 1 and self.device.is_host:  # the tokens are in host memory
                ran, history, sums = self._steps_on_host(start.inputs, steps - 1, eot)
            else:
                ran = self._steps(start.space, start.inputs, steps - 1, eot)
                self.device.synchronize()
                history = runtime.host_copy(start.space.state[0])
                sums = runtime.host_float32(start.space.state[3]).copy()
            done = 1 + ran
            no_speech_probs = runtime.host_float32(start.no_speech).astype(np.float64)
        finally:
            start.space.in_use = False
        session.advance(n_prompt + done - 1)
        return GreedyResult(history[:, : n_prompt + done], sums, no_speech_probs)

    def start(
        self,
        session: MaxDecoderSession,
        initial: np.ndarray,
        sot_index: int,
        first_mask: np.ndarray,
        later_mask: np.ndarray,
        settings: np.ndarray,
    ) -> Started:
        """Queue a window batch's start graph (prompt, no-speech probability, first token) in
        its workspace (taken: release it with ``space.in_use = False``); what the step graph
        then takes."""
        model = self.model
        batch, n_prompt = initial.shape
        if session.length != 0:
            raise ValueError("greedy decoding on the device starts from an empty cache")
        history = np.zeros((batch, history_width(model.dims)), dtype=np.int64)
        history[:, :n_prompt] = initial
        keep: list = []  # what queued copies read, until the device is synchronised
        space = self._workspace(session, later_mask, settings, keep)
        try:
            _upload(space.state[0], history, keep)
            _upload(space.state[1], np.array([n_prompt], np.int64), keep)
            # copies are not ordered before graph calls (on the CPU the start graph read the
            # history before its copy had landed: wrong first tokens); once per window
            self.device.synchronize()
            fixed = [space.mask, self.ids, space.settings, *session.rows_input()]
            positions, _, causal, _ = model.step_inputs(0, n_prompt, (0,))
            first = model.to_device(first_mask)
            where = model.to_device(np.array([sot_index, n_prompt - 1], dtype=np.int64))
            (no_speech,) = model.run(
                "decode_start",
                *space.state,
                first,
                *fixed[1:],
                positions,
                causal,
                where,
                *space.cross,
                *space.caches,
            )
        except BaseException:
            space.in_use = False
            raise
        keep += [first, where]
        inputs = [*space.state, *fixed, *space.cross, *space.caches]
        return Started(space, inputs, no_speech, keep)

    def _steps_on_host(
        self, inputs: list[Buffer], limit: int, eot: int
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """The CPU's steps, up to ``limit``, reading each step's tokens in host memory: how many
        ran, the token history and the summed log-probabilities. Sequences that have ended
        leave the batch after the step that ended them (:meth:`_without`): a step's time grows
        with its rows (each reads its window's cross keys/values), and a batch's sequences end
        far apart."""
        model = self.model
        batch = int(inputs[0].shape[0])
        history = np.empty((batch, int(inputs[0].shape[1])), np.int64)
        sums = np.empty(batch, np.float32)
        alive = np.arange(batch)  # the original row of each row left, in order
        ran = limit
        for step in range(limit):
            (tokens,) = model.run("decode_step", *inputs)
            ended = tokens.to_numpy() == eot
            if ended.all():
                ran = step + 1
                break
            if ended.any() and self.drop_ended and self._per_window(inputs):
                inputs = self._without(inputs, ended, alive, history, sums, eot)
                alive = alive[~ended]
        self.device.synchronize()
        history[alive] = inputs[0].to_numpy()
        sums[alive] = inputs[3].to_numpy()
        return ran, history, sums

    def _per_window(self, inputs: list[Buffer]) -> bool:
        """Whether ``inputs`` carry each sequence's window (per-window cross keys/values,
        which then need no gathering)."""
        return len(inputs) == 4 + 4 + 4 * self.model.dims.n_text_layer

    def _without(
        self,
        inputs: list[Buffer],
        ended: np.ndarray,
        alive: np.ndarray,
        history: np.ndarray,
        sums: np.ndarray,
        eot: int,
    ) -> list[Buffer]:
        """The step inputs without the rows ``ended``, whose history (end-of-text from the
        current length on, as further steps would write) and sums go to ``history`` and
        ``sums`` at their original rows ``alive[ended]``. The per-row state, windows and
        self-attention caches (their filled positions) are gathered; the rest is shared."""
        keep = ~ended
        self.device.synchronize()
        length = int(inputs[1].to_numpy()[0])
        finished = inputs[0].to_numpy()[ended]
        finished[:, length:] = eot
        history[alive[ended]] = finished
        sums[alive[ended]] = inputs[3].to_numpy()[ended]

        def gathered(buffer: Buffer) -> Buffer:
            return self.model.to_device(np.ascontiguousarray(buffer.to_numpy()[keep]))

        def cache(buffer: Buffer) -> Buffer:
            old = buffer.to_numpy()
            new = np.zeros((int(keep.sum()), *old.shape[1:]), old.dtype)
            new[:, :, :length] = old[keep, :, :length]  # the slots written so far
            return self.model.to_device(new)

        n_cross = 2 * self.model.dims.n_text_layer
        state = [gathered(inputs[0]), inputs[1], gathered(inputs[2]), gathered(inputs[3])]
        mask, ids, settings, rows = inputs[4:8]
        cross = inputs[8 : 8 + n_cross]
        caches = [cache(b) for b in inputs[8 + n_cross :]]
        return [*state, mask, ids, settings, gathered(rows), *cross, *caches]

    def _steps(self, space: Workspace, inputs: list[Buffer], limit: int, eot: int) -> int:
        """Run up to ``limit`` step graphs on a GPU, reading the tokens back every
        :attr:`read_every` steps without blocking; how many ran (the last may follow the end)."""
        model = self.model
        start = time.perf_counter()
        pending: list[tuple[DeviceEvent, Buffer]] = []
        reads = 0
        for step in range(limit):
            tokens = self._queue_step(space, inputs)
            ran = step + 1
            if ran % self.read_every == 0 or ran == limit:
                pending.append(self._read_back(space, tokens, reads))
                reads += 1
            while pending and (len(pending) > MAX_PENDING or pending[0][0].is_ready()):
                event, copy = pending.pop(0)
                event.synchronize()
                if (copy.to_numpy() == eot).all():
                    model._count("decode_step", start)
                    return ran
        model._count("decode_step", start)
        return limit

    def _queue_step(self, space: Workspace, inputs: list[Buffer]) -> Buffer:
        """Queue one step graph (replayed where captured); its tokens output."""
        if space.captured is not None:
            self.model.compiled("decode_step").replay(space.batch, *inputs)
            return space.captured[0]
        (tokens,) = self.model.compiled("decode_step").execute(*inputs)
        return tokens

    def _read_back(self, space: Workspace, tokens: Buffer, n: int) -> tuple[DeviceEvent, Buffer]:
        """Copy ``tokens`` to pinned host memory behind the queued work (the ``n``-th read-back
        of a window: a ring of buffers, more than can be in flight at once); the copy's event."""
        while len(space.pinned) < MAX_PENDING + 2:
            space.pinned.append(runtime.staging_buffer([space.batch], DType.int64, self.device))
        copy = space.pinned[n % len(space.pinned)]
        copy.inplace_copy_from(tokens)
        return self.device.default_queue.record_event(), copy

    # -----------------------------------------------------------------------------------------

    def _workspace(
        self, session: MaxDecoderSession, later_mask: np.ndarray, settings: np.ndarray, keep: list
    ) -> Workspace:
        """Buffers for ``session``: its own caches and keys/values on the CPU; on a GPU the
        batch size's workspace (captured once), the session's keys/values copied in."""
        model = self.model
        batch = session.batch_size
        if not self.capture:
            return Workspace(
                batch,
                self._new_state(batch),
                model.to_device(later_mask),
                model.to_device(settings),
                list(session.cross),
                list(session.caches),
            )
        space = self.workspaces.get(batch)
        if space is None or space.in_use or not _same_shapes(space.cross, session.cross):
            space = self._new_workspace(session, later_mask, settings)
        else:
            self.workspaces.move_to_end(batch)
            for mine, theirs in zip(space.cross, session.cross, strict=True):
                mine.inplace_copy_from(theirs)
            _upload(space.mask, later_mask, keep)
            _upload(space.settings, settings, keep)
        space.in_use = True
        return space

    def _new_state(self, batch: int) -> list[Buffer]:
        """Zeroed state buffers (:func:`~maxwhisper_lib.engine.graphs.loop.state_types`) with a length
        of one (a step run on them is harmless)."""
        dims = self.model.dims
        state = [
            runtime.zeros([batch, history_width(dims)], DType.int64, self.device),
            runtime.zeros([1], DType.int64, self.device),
            runtime.zeros([batch, 3], DType.int64, self.device),
            runtime.zeros([batch], DType.float32, self.device),
        ]
        keep: list = []
        _upload(state[1], np.ones(1, np.int64), keep)
        self.device.synchronize()
        return state

    def _new_workspace(
        self, session: MaxDecoderSession, later_mask: np.ndarray, settings: np.ndarray
    ) -> Workspace:
        """A GPU workspace for the session's batch size, its step graph captured; kept when no
        other of that size is (the least recently used is dropped past
        :data:`MAX_WORKSPACES`)."""
        model = self.model
        batch = session.batch_size
        space = Workspace(
            batch,
            self._new_state(batch),
            model.to_device(later_mask),
            model.to_device(settings),
            [_copy(b, self.device) for b in session.cross],
            list(session.caches),  # the session's own, fresh: the workspace takes them
        )
        kept = self.workspaces.get(batch)
        if kept is not None and kept.in_use:
            return space  # one of this size is in use: this one is neither kept nor captured
        if self.capture_failed is None:
            fixed = [space.mask, self.ids, space.settings, *session.rows_input()]
            inputs = [*space.state, *fixed, *space.cross, *space.caches]
            try:
                # a captured step may run once here: on a harmless state, which the start graph
                # then resets; a capture under the key of a dropped workspace replaces it
                space.captured = model.compiled("decode_step").capture(batch, *inputs)
            except Exception as error:
                self.capture_failed = f"{type(error).__name__}: {error}"
                log.warning("graph capture failed, the step graph runs uncaptured: %s", error)
        self.workspaces[batch] = space
        self.workspaces.move_to_end(batch)
        while len(self.workspaces) > MAX_WORKSPACES:
            old_batch, old = self.workspaces.popitem(last=False)
            if old.captured is not None:
                old.captured = None
                model.compiled("decode_step").release_captured_graph(old_batch)
        return space


def _copy(buffer: Buffer, device) -> Buffer:
    copy = Buffer(buffer.dtype, list(buffer.shape), device=device)
    copy.inplace_copy_from(buffer)
    return copy


def _same_shapes(mine: list[Buffer], theirs: list[Buffer]) -> bool:
    return [tuple(b.shape) for b in mine] == [tuple(b.shape) for b in theirs]
