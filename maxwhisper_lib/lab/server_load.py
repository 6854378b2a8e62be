"""The server under load, on loopback: throughput and latency at 1-64 concurrent clients against
the library's own batch throughput, the same server one request at a time, and faster-whisper
behind the same HTTP front; and a soak of good and bad requests with the server's memory.

``python -m maxwhisper_lib.lab.server_load --output reports/FOLDER [--soak_minutes 20]``.
Each server is its own process (``maxwhisper-server``, or faster-whisper's behind the same app:
``python -m maxwhisper_lib.lab.server_load fw-server``), started, measured and stopped in turn;
the clients are threads of this process using the ``openai`` client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_text_file
from ..server.batcher import BatcherStats, Done, Failed, Segments, Started
from .manifest import load_manifest

MODULE = "maxwhisper_lib.lab.server_load"
CLIENTS = (1, 4, 16, 64)
REQUESTS = 64


# ------------------------------------------------------------------ faster-whisper, same front


class FasterWhisperScheduler:
    """faster-whisper behind the server's app: one worker decodes the requests one at a time
    (faster-whisper has no batching across requests; its batched pipeline batches one file's
    chunks), greedy with openai-whisper's temperature fallback, as MAX-Whisper's defaults."""

    def __init__(
        self, compute_type: str = "float32", model: str = "tiny.en", device: str = "cpu"
    ) -> None:
        from faster_whisper import WhisperModel

        from ..checkpoints import ct2_path
        from ..engine import machine

        self.model = WhisperModel(
            str(ct2_path(model)),
            device="cuda" if device == "gpu" else "cpu",
            compute_type=compute_type,
            cpu_threads=machine.usable_cores(),
        )
        self.stats = BatcherStats()
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.in_flight = 0

    @property
    def waiting(self) -> int:
        return self.jobs.qsize()

    def options(self, **kwargs: Any) -> dict:
        names = {"initial_prompt", "word_timestamps", "language", "task", "temperature"}
        return {k: v for k, v in kwargs.items() if k in names}

    def submit(
        self, samples: np.ndarray, options: dict, on_event, share_prompt: bool = False
    ) -> _FwJob:
        job = _FwJob(samples, options, on_event)
        self.stats.submitted += 1
        self.jobs.put(job)
        return job

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self.jobs.put(None)
        self.thread.join(timeout)

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.cancelled:
                self.stats.cancelled += 1
                continue
            self.in_flight = 1
            try:
                segments, info = self.model.transcribe(
                    job.samples, beam_size=1, vad_filter=False, **job.options
                )
                job.on_event(Started(info.language, info.language_probability, info.duration))
                result = [_fw_segment(s) for s in segments]
                job.on_event(Segments(result))
                text = "".join(s["text"] for s in result)
                job.on_event(Done({"text": text, "segments": result, "language": info.language}))
                self.stats.completed += 1
            except Exception as error:
                self.stats.failed += 1
                job.on_event(Failed(error))
            finally:
                self.in_flight = 0


@dataclass(eq=False)
class _FwJob:
    samples: np.ndarray
    options: dict
    on_event: Any
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


def _fw_segment(segment) -> dict:
    return {
        "id": segment.id,
        "seek": segment.seek,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def serve_faster_whisper(port: int, compute_type: str, device: str = "cpu") -> None:
    """faster-whisper behind the server's app on 127.0.0.1:``port`` (until SIGTERM)."""
    import uvicorn

    from ..server.app import Service, create_app

    scheduler = FasterWhisperScheduler(compute_type, device=device)
    service = Service(scheduler, "tiny.en", multilingual=False)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: None)
    uvicorn.run(create_app(service), host="127.0.0.1", port=port, log_level="warning")


# ------------------------------------------------------------------ servers as processes


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_kb(pid: int) -> tuple[int, int]:
    """(resident, peak resident) kB of process ``pid`` (Linux)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@dataclass
class RunningServer:
    """A server process: its URL, the process, and the file its output goes to."""

    url: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def server(command: Sequence[str], timeout: float = 900) -> Iterator[RunningServer]:
    """Run ``command`` (given ``--port P`` at its end; its output to a temporary file, never a
    pipe that could fill) until it answers ``/health``; SIGTERM it afterwards."""
    import tempfile

    import httpx

    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [*command, "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT, text=True
            )
        running = RunningServer(f"http://127.0.0.1:{port}", process, log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited: {running.output()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{running.url}/health", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command} did not start in {timeout} s")
                time.sleep(0.2)
            yield running
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(120)
                except subprocess.TimeoutExpired:
                    process.kill()


def max_server(*options: str) -> list[str]:
    """``maxwhisper-server OPTIONS`` (access log off)."""
    return [sys.executable, "-m", "maxwhisper_lib.server", "--log_level", "warning", *options]


def fw_server(compute_type: str, device: str = "cpu") -> list[str]:
    return [
        sys.executable,
        "-m",
        MODULE,
        "fw-server",
        "--compute_type",
        compute_type,
        "--device",
        device,
    ]


# ------------------------------------------------------------------ load


@dataclass
class Upload:
    name: str
    data: bytes
    seconds: float
    path: Path


def dev_uploads() -> list[Upload]:
    """The English dev clips with a reference, as their files' bytes."""
    return [
        Upload(c.path.name, c.path.read_bytes(), c.duration, c.path)
        for c in load_manifest()
        if c.has_reference
    ]


def requests_of(uploads: Sequence[Upload], count: int) -> list[Upload]:
    return [uploads[i % len(uploads)] for i in range(count)]


@dataclass
class LoadResult:
    """One load: ``clients`` threads sending ``requests`` in all, each waiting for its answer."""

    label: str
    clients: int
    requests: int
    audio_s: float
    wall_s: float
    latencies_s: list[float] = field(repr=False)
    errors: int
    texts: list[str] = field(repr=False, default_factory=list)
    names: list[str] = field(repr=False, default_factory=list)

    @property
    def throughput(self) -> float:
        """Audio seconds transcribed per second."""
        return self.audio_s / self.wall_s

    def summary(self) -> dict:
        lat = np.asarray(self.latencies_s)
        return {
            "label": self.label,
            "clients": self.clients,
            "requests": self.requests,
            "audio_s": round(self.audio_s, 2),
            "wall_s": round(self.wall_s, 3),
            "throughput": round(self.throughput, 2),
            "p50_s": round(float(np.percentile(lat, 50)), 3),
            "p95_s": round(float(np.percentile(lat, 95)), 3),
            "errors": self.errors,
        }


def run_load(url: str, requests: Sequence[Upload], clients: int, label: str) -> LoadResult:
    """``clients`` threads take the next request until none is left (OpenAI's client, json)."""
    import openai

    latencies: list[float] = [0.0] * len(requests)
    texts: list[str] = [""] * len(requests)
    errors = [0]
    cursor = iter(range(len(requests)))
    lock = threading.Lock()

    def worker() -> None:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=900)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            upload = requests[index]
            start = time.perf_counter()
            try:
                answer = api.audio.transcriptions.create(
                    file=(upload.name, upload.data), model="whisper-1"
                )
                texts[index] = answer.text
            except openai.APIError:
                with lock:
                    errors[0] += 1
            latencies[index] = time.perf_counter() - start

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    audio_s = sum(u.seconds for u in requests)
    names = [u.name for u in requests]
    return LoadResult(
        label, clients, len(requests), audio_s, wall, latencies, errors[0], texts, names
    )


def library_load(
    requests: Sequence[Upload], batch_size: int | None, device: str = "cpu"
) -> LoadResult:
    """The library on the same files, in a process of its own (MAX's idle worker threads must
    not share the clients' cores later): one by one (``batch_size`` None) or ``batch_size``
    files' windows together (``transcribe_batch``)."""
    command = [sys.executable, "-m", MODULE, "library", "--device", device]
    command += ["--requests", str(len(requests))]
    if batch_size is not None:
        command += ["--batch_size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the library run failed: {done.stderr[-2000:]}")
    fields = json.loads(done.stdout.strip().splitlines()[-1])
    return LoadResult(**fields)


def _library_run(requests: Sequence[Upload], batch_size: int | None, device: str) -> LoadResult:
    from .. import load_model

    model = load_model("tiny.en", device=device)
    model.transcribe(requests[0].path)  # warm
    start = time.perf_counter()
    if batch_size is None:
        results = [model.transcribe(u.path) for u in requests]
    else:
        results = model.transcribe_batch([u.path for u in requests], batch_size=batch_size)
    wall = time.perf_counter() - start
    label = "library, one by one" if batch_size is None else f"library, batch {batch_size}"
    return LoadResult(
        label,
        1,
        len(requests),
        sum(u.seconds for u in requests),
        wall,
        [wall / len(requests)] * len(requests),
        0,
        [r["text"].strip() for r in results],
        [u.name for u in requests],
    )


# ------------------------------------------------------------------ soak


def soak(
    url: str,
    pid: int,
    seconds: float,
    uploads: Sequence[Upload],
    clients: int = 8,
    progress: bool = True,
) -> dict:
    """``clients`` threads send a mix of good requests (checked against the first answer for
    the same clip) and bad ones (not audio, empty, silent, unknown model, bad option, a client
    that gives up early) for ``seconds``; the server's memory is sampled every second."""
    import httpx
    import openai
    from tqdm import tqdm

    from ..audio.load import load_audio

    silent = wav_bytes(np.zeros(16000, dtype=np.float32))
    long = wav_bytes(np.concatenate([load_audio(u.path) for u in uploads]))
    bad = [
        ({"model": "whisper-1"}, b"not audio at all", 400),
        ({"model": "whisper-1"}, b"", 400),
        ({"model": "whisper-1"}, silent, 400),
        ({"model": "whisper-9"}, uploads[0].data, 404),
        ({"model": "whisper-1", "temperature": "7"}, uploads[0].data, 400),
    ]
    expected: dict[str, str] = {}
    counts = {"good": 0, "bad": 0, "abandoned": 0, "failed_good": 0, "wrong_status": 0, "lost": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=300)
        while time.monotonic() < stop:
            kind = rng.random()
            try:
                if kind < 0.6:
                    upload = uploads[int(rng.integers(len(uploads)))]
                    text = api.audio.transcriptions.create(
                        file=(upload.name, upload.data), model="whisper-1"
                    ).text
                    with lock:
                        counts["good"] += 1
                        if expected.setdefault(upload.name, text) != text:
                            counts["failed_good"] += 1
                elif kind < 0.9:
                    data, content, status = bad[int(rng.integers(len(bad)))]
                    response = httpx.post(
                        f"{url}/v1/audio/transcriptions",
                        data=data,
                        files={"file": ("x.wav", content)},
                        timeout=300,
                    )
                    with lock:
                        counts["bad"] += 1
                        ok = response.status_code == status and "error" in response.json()
                        counts["wrong_status"] += not ok
                else:
                    with contextlib.suppress(httpx.ReadTimeout):
                        httpx.post(
                            f"{url}/v1/audio/transcriptions",
                            data={"model": "whisper-1"},
                            files={"file": ("long.wav", long)},
                            timeout=httpx.Timeout(300, read=0.5),
                        )
                    with lock:
                        counts["abandoned"] += 1
            except (openai.APIError, httpx.HTTPError):
                with lock:
                    counts["failed_good" if kind < 0.6 else "lost"] += 1

    memory: list[tuple[float, int, int]] = []
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    begin = time.monotonic()
    for thread in threads:
        thread.start()
    with tqdm(total=round(seconds), unit="s", disable=not progress, desc="soak") as bar:
        while any(t.is_alive() for t in threads):
            rss, peak = memory_kb(pid)
            memory.append((round(time.monotonic() - begin, 1), rss, peak))
            time.sleep(1)
            bar.n = min(round(seconds), round(time.monotonic() - begin))
            bar.set_postfix(good=counts["good"], bad=counts["bad"], refresh=False)
            bar.refresh()
    for thread in threads:
        thread.join()
    settle = time.monotonic() + 30  # abandoned requests are dropped at the batcher's next round
    while time.monotonic() < settle:
        health = httpx.get(f"{url}/health").json()
        if health["in_flight"] == 0 and health["waiting"] == 0:
            break
        time.sleep(0.1)
    first_minute = max(p for t, _, p in memory if t <= min(60, seconds / 2))
    end_peak = memory[-1][2]
    return {
        "seconds": round(time.monotonic() - begin, 1),
        "clients": clients,
        **counts,
        "peak_rss_first_minute_mb": round(first_minute / 1024, 1),
        "peak_rss_end_mb": round(end_peak / 1024, 1),
        "peak_ratio": round(end_peak / first_minute, 3),
        "memory": memory,
        "health": health,
    }


def wav_bytes(samples: np.ndarray) -> bytes:
    """16-bit mono 16 kHz WAV of float samples in [-1, 1]."""
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)
        file.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


# ------------------------------------------------------------------ the benchmark


def benchmark(
    output: Path, soak_minutes: float = 0, requests: int = REQUESTS, device: str = "cpu"
) -> dict:
    """Every load above, one after the other on this machine (``device``: cpu, or gpu: MAX
    float16 and faster-whisper float16, no int8); writes ``results.json`` and the plot into
    ``output``."""
    from ..engine.machine import machine_info

    uploads = dev_uploads()
    work = requests_of(uploads, requests)
    runs: list[LoadResult] = []

    def note(result: LoadResult) -> None:
        runs.append(result)
        print(json.dumps(result.summary()), flush=True)

    note(library_load(work, None, device))
    note(library_load(work, 16, device))
    with server(max_server("--max_batch", "16", "--device", device)) as running:
        run_load(running.url, work[:4], 4, "warm-up")
        for clients in CLIENTS:
            note(
                run_load(
                    running.url, requests_of(uploads, max(requests, clients)), clients, "MAX server"
                )
            )
    with server(max_server("--max_batch", "1", "--device", device)) as running:
        run_load(running.url, work[:2], 2, "warm-up")
        note(run_load(running.url, work, 16, "MAX server, one at a time"))
    if device == "cpu":
        with server(max_server("--max_batch", "16", "--quantization", "int8")) as running:
            run_load(running.url, work[:4], 4, "warm-up")
            note(run_load(running.url, work, 16, "MAX server int8"))
    for compute_type in ("float32", "int8") if device == "cpu" else ("float16",):
        with server(fw_server(compute_type, device)) as running:
            run_load(running.url, work[:2], 2, "warm-up")
            note(run_load(running.url, work, 16, f"faster-whisper {compute_type} server"))
    soaked = None
    if soak_minutes > 0:
        with server(max_server("--max_batch", "16", "--device", device)) as running:
            soaked = soak(running.url, running.pid, soak_minutes * 60, uploads)
    reference = {r.label: r for r in runs}
    results = {
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "requests": requests,
        "clips": [u.name for u in uploads],
        "runs": [r.summary() for r in runs],
        "agreement": _agreement(runs),
        "ratios": _ratios(reference, runs),
        "soak": soaked,
    }
    output.mkdir(parents=True, exist_ok=True)
    with atomic_text_file(output / "results.json") as file:
        json.dump(results, file, indent=2)
    plot(results, output / "server-load.png")
    return results


def _agreement(runs: Sequence[LoadResult]) -> dict:
    """How many of each MAX server run's answers equal the library's transcript of the same
    file decoded alone (the library's one-by-one run)."""
    alone = dict(zip(runs[0].names, runs[0].texts, strict=True))
    found = {}
    for run in runs[1:]:
        if run.label.startswith("MAX server") and "int8" not in run.label:
            same = sum(alone.get(n) == t for n, t in zip(run.names, run.texts, strict=True))
            found[f"{run.label} x{run.clients}"] = f"{same}/{len(run.texts)}"
    return found


def _ratios(reference: dict[str, LoadResult], runs: Sequence[LoadResult]) -> dict:
    server16 = next(r for r in runs if r.label == "MAX server" and r.clients == 16)
    library16 = reference["library, batch 16"]
    library1 = reference["library, one by one"]
    one_at_a_time = reference["MAX server, one at a time"]
    ratios = {
        "server x16 / library batch 16": server16.throughput / library16.throughput,
        "server x16 / server one at a time": server16.throughput / one_at_a_time.throughput,
        "library batch 16 / library one by one": library16.throughput / library1.throughput,
    }
    for label in (
        "faster-whisper float32 server",
        "faster-whisper int8 server",
        "faster-whisper float16 server",
    ):
        if label in reference:
            ratios[f"server x16 / {label}"] = server16.throughput / reference[label].throughput
    if "MAX server int8" in reference and "faster-whisper int8 server" in reference:
        ratios["MAX int8 server / faster-whisper int8 server"] = (
            reference["MAX server int8"].throughput
            / reference["faster-whisper int8 server"].throughput
        )
    return {k: round(v, 3) for k, v in ratios.items()}


def plot(results: dict, path: Path) -> None:
    """Throughput and latency against clients, beside the library and the peers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    scaling = [r for r in runs if r["label"] == "MAX server"]
    soaked = results.get("soak")
    if soaked:
        fig, grid = plt.subplots(2, 2, figsize=(14, 9))
        axes = grid.ravel()
    else:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    left, middle, right = axes[:3]
    clients = [r["clients"] for r in scaling]
    left.plot(clients, [r["throughput"] for r in scaling], "o-", label="MAX server")
    for r in runs:
        if r["label"].startswith("library"):
            left.axhline(r["throughput"], ls="--", lw=1, color="gray")
            left.text(clients[0], r["throughput"], r["label"], va="bottom", fontsize=8)
    left.set(xscale="log", xlabel="concurrent clients", ylabel="audio s / s", title="throughput")
    left.set_ylim(bottom=0)
    left.set_xticks(clients, [str(c) for c in clients])
    middle.plot(clients, [r["p50_s"] for r in scaling], "o-", label="p50")
    middle.plot(clients, [r["p95_s"] for r in scaling], "s--", label="p95")
    middle.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="seconds")
    middle.set_title("latency per request")
    middle.set_xticks(clients, [str(c) for c in clients])
    middle.legend()
    sixteen = [r for r in runs if r["clients"] == 16 or r["label"].startswith("library")]
    labels = [r["label"] + ("" if r["label"].startswith("library") else " x16") for r in sixteen]
    right.barh(labels, [r["throughput"] for r in sixteen], color="tab:blue")
    right.set(xlabel="audio s / s", title="16 clients, beside the library")
    right.invert_yaxis()
    if soaked:
        memory = np.asarray(soaked["memory"], dtype=float)
        axes[3].plot(memory[:, 0] / 60, memory[:, 1] / 1024, lw=0.6, label="resident")
        axes[3].plot(memory[:, 0] / 60, memory[:, 2] / 1024, lw=1.2, label="peak so far")
        axes[3].set(xlabel="minutes", ylabel="MB", title="soak: the server's memory")
        axes[3].set_ylim(bottom=0)
        axes[3].legend()
    fig.suptitle("maxwhisper-server on loopback, tiny.en, dev clips")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maxwhisper_lib.lab.server_load")
    sub = parser.add_subparsers(dest="command")
    fw = sub.add_parser("fw-server", help="faster-whisper behind the server's app")
    fw.add_argument("--compute_type", default="float32")
    fw.add_argument("--port", type=int, required=True)
    fw.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--output", type=Path, default=Path("reports/cpu-2core-tiny.en-server"))
    parser.add_argument("--soak_minutes", type=float, default=0)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    library = sub.add_parser("library", help="the library's run, printed as JSON")
    library.add_argument("--batch_size", type=int, default=None)
    library.add_argument("--requests", type=int, default=REQUESTS)
    library.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument(
        "--soak_only",
        action="store_true",
        help="run the soak alone and put it into the output's existing results.json",
    )
    args = parser.parse_args(argv)
    if args.command == "library":
        work = requests_of(dev_uploads(), args.requests)
        result = _library_run(work, args.batch_size, args.device)
        fields = {k: getattr(result, k) for k in result.__dataclass_fields__}
        print(json.dumps(fields))
        return 0
    if args.command == "fw-server":
        serve_faster_whisper(args.port, args.compute_type, args.device)
        return 0
    if args.soak_only:
        soak_again(args.output, args.soak_minutes, args.device)
        return 0
    results = benchmark(args.output, args.soak_minutes, args.requests, args.device)
    print(json.dumps(results["ratios"], indent=2))
    return 0


def soak_again(folder: Path, minutes: float, device: str = "cpu") -> dict:
    """The soak alone, written into ``folder/results.json`` (the load runs kept) and its plot."""
    results = json.loads((folder / "results.json").read_text())
    with server(max_server("--max_batch", "16", "--device", device)) as running:
        results["soak"] = soak(running.url, running.pid, minutes * 60, dev_uploads())
    results["soak"]["commit"] = _commit()
    with atomic_text_file(folder / "results.json") as file:
        json.dump(results, file, indent=2)
    plot(results, folder / "server-load.png")
    return results


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def replot(folder: Path) -> None:
    """Draw ``folder/server-load.png`` again from its ``results.json``."""
    plot(json.loads((folder / "results.json").read_text()), folder / "server-load.png")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())


__all__ = [
    "FasterWhisperScheduler",
    "LoadResult",
    "benchmark",
    "dev_uploads",
    "library_load",
    "plot",
    "run_load",
    "soak",
]
