"""The server's app on Ray Serve: two replicas on a local Ray cluster, each holding a compiled
tiny.en, behind Ray's HTTP proxy on 127.0.0.1; the ``openai`` client's answers are the
library's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from server_harness import free_port

from maxwhisper_lib.api import WhisperModel
from maxwhisper_lib.lab.manifest import clip, load_manifest
from maxwhisper_lib.server.settings import ServerSettings

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_server():
    from ray import serve

    from maxwhisper_lib.server.ray_serve import run

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    port = free_port()
    try:
        run(ServerSettings(model="tiny.en", device="cpu", port=port, replicas=2), blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_with_the_librarys_transcripts(ray_server, max_tiny):
    library = WhisperModel(max_tiny, "tiny.en", "cpu", "float32")
    clips = [c.id for c in load_manifest() if c.has_reference] * 2
    client = openai.OpenAI(base_url=f"{ray_server}/v1", api_key="none", max_retries=0)

    def ask(clip_id: str) -> str:
        path = clip(clip_id).path
        return client.audio.transcriptions.create(
            file=(path.name, path.read_bytes()), model="whisper-1"
        ).text

    with ThreadPoolExecutor(len(clips)) as pool:
        answers = list(pool.map(ask, clips))
    assert answers == [library.transcribe(clip(c).path)["text"].strip() for c in clips]
    replicas = {httpx.get(f"{ray_server}/health").json()["pid"] for _ in range(20)}
    assert len(replicas) == 2


def test_errors_keep_openais_shape_through_rays_proxy(ray_server):
    response = httpx.post(
        f"{ray_server}/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", b"not audio")},
    )
    assert response.status_code == 400
    assert "not a readable audio file" in response.json()["error"]["message"]
