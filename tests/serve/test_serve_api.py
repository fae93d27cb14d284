"""The `vaekit serve` HTTP API through FastAPI's TestClient: every endpoint, the coordinates, and the limits."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed: pip install 'vaekit[serve]'")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")


def _png(a: np.ndarray, mode: str = "L", fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a, mode).save(buf, format=fmt)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pixels(data_url: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_page_and_schema_need_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and r.content
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text and "https://" not in text  # no CDN, no external resource
    schema = client.get("/openapi.json").json()
    assert {"/api/info", "/api/map", "/api/points/{index}", "/api/decode", "/api/encode", "/api/interpolate",
            "/api/sample", "/api/resample"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 404  # Swagger UI would load a CDN
    assert client.get("/static/../../etc/passwd").status_code == 404


def test_info_sorts_by_kl(client, vae_explorer):
    info = client.get("/api/info").json()
    assert info["latent_dim"] == 3 and info["data_shape"] == [1, 8, 8] and info["family"] == "vae"
    kl = info["kl"]
    assert len(kl) == 3 and all(k >= 0 for k in kl)
    assert [kl[d] for d in info["order"]] == sorted(kl, reverse=True)
    assert info["n_points"] == len(vae_explorer.points_u) > 0


def test_decode_matches_the_model(client, vae_explorer):
    u = [[0.0, 0.0, 0.0], [1.5, -2.0, 0.5]]
    images = client.post("/api/decode", json={"u": u}).json()["images"]
    model = vae_explorer.model
    with torch.no_grad():
        want = model.decode(torch.tensor(u)).mean  # N(0, I) prior: u = z
    for im, w in zip(images, want):
        got = _pixels(im).astype(np.float64) / 255
        assert got.shape == (8, 8)
        assert np.abs(got - w[0].numpy()).max() <= 0.5 / 255 + 1e-6
    assert images[0] != images[1]


def test_map_click_roundtrip(client, vae_explorer):
    m = client.get("/api/map").json()
    comps, mean = np.array(m["components"]), np.array(m["mean"])
    p = client.get("/api/points/5").json()
    xy = np.array([m["x"][5], m["y"][5]])
    assert np.allclose((np.array(p["u"]) - mean) @ comps, xy, atol=1e-3)
    assert len(m["x"]) == len(m["y"]) == len(m["labels"]) == vae_explorer.points_u.shape[0]
    assert p["label"] == m["labels"][5] and p["image"].startswith("data:image/png;base64,")
    assert client.get("/api/points/100000").status_code == 404
    assert client.get("/api/points/-1").status_code == 404


def test_encode_a_test_image_gives_its_posterior(client):
    p = client.get("/api/points/7").json()
    r = client.post("/api/encode", json={"image": p["image"]})
    assert r.status_code == 200, r.text
    e = r.json()
    assert np.allclose(e["mean"], p["u"], atol=0.05)  # 8-bit PNG round trip of the same pixels
    assert all(s > 0 for s in e["std"]) and len(e["std"]) == 3
    assert _pixels(e["reconstruction"]).shape == (8, 8)


def test_encode_resizes_and_converts(client):
    big = np.zeros((200, 160, 3), np.uint8)
    big[40:160, 60:100] = 255
    r = client.post("/api/encode", json={"image": _png(big, "RGB")})
    assert r.status_code == 200, r.text
    assert _pixels(r.json()["input"]).shape == (8, 8)
    jpeg = _png(big, "RGB", "JPEG").split(",", 1)[1]  # bare base64 works too
    assert client.post("/api/encode", json={"image": jpeg}).status_code == 200


@pytest.mark.parametrize("image,status,words", [
    ("not base64!!", 422, "base64"),
    ("data:image/png,xyz", 422, "data URL"),
    (base64.b64encode(b"hello, not an image").decode(), 422, "supported format"),
    (None, 422, "elongated"),
    ("", 422, ""),
])
def test_bad_uploads_are_4xx_with_a_message(client, image, status, words):
    if image is None:
        image = _png(np.zeros((10, 100), np.uint8))
    r = client.post("/api/encode", json={"image": image})
    assert r.status_code == status, r.text
    assert words in str(r.json()["detail"])


def test_upload_limits(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buf, format="PNG")  # small file, too many pixels: refused from the header
    r = client.post("/api/encode", json={"image": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 413 and "2048" in r.json()["detail"]
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="TIFF")
    r = client.post("/api/encode", json={"image": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 415 and "TIFF" in r.json()["detail"]
    truncated = base64.b64decode(_png(np.full((64, 64), 7, np.uint8)).split(",")[1])[:60]
    r = client.post("/api/encode", json={"image": base64.b64encode(truncated).decode()})
    assert r.status_code == 422


def test_request_bounds(client):
    assert client.post("/api/decode", json={"u": [[0.0, 0.0]]}).status_code == 422  # wrong latent size
    assert client.post("/api/decode", json={"u": [[0.0] * 3] * 65}).status_code == 422  # batch bound
    assert client.post("/api/decode", json={"u": [[1e9, 0, 0]]}).status_code == 422
    assert client.post("/api/decode", content=b'{"u": [[NaN, 0, 0]]}',
                       headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/api/sample", json={"n": 1000}).status_code == 422
    assert client.post("/api/sample", json={"temperature": 0}).status_code == 422
    assert client.post("/api/interpolate", json={"ua": [0] * 3, "ub": [1] * 3, "steps": 100}).status_code == 422
    assert client.post("/api/decode", json={"u": [[0, 0, 0]], "path": "/etc"}).status_code == 422
    big = b'{"u": [[' + b"0," * (3 * 1024 * 1024) + b'0]]}'
    r = client.post("/api/decode", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_host_header_is_checked(client):
    assert client.get("/api/info", headers={"host": "attacker.example"}).status_code == 400
    assert client.get("/api/info", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_sample_interpolate(client):
    a = client.post("/api/sample", json={"n": 4, "temperature": 0.5, "seed": 3}).json()
    b = client.post("/api/sample", json={"n": 4, "temperature": 0.5, "seed": 3}).json()
    assert a == b and len(a["images"]) == 4 and np.abs(np.array(a["u"])).max() < 0.5 * 6
    ua, ub = [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]
    lin = client.post("/api/interpolate", json={"ua": ua, "ub": ub, "steps": 5}).json()
    sl = client.post("/api/interpolate", json={"ua": ua, "ub": ub, "steps": 5, "method": "slerp"}).json()
    assert np.allclose(lin["u"][2], [0.5, 1.0, 0.0], atol=1e-6)
    assert np.allclose(sl["u"][0], ua, atol=1e-5) and np.allclose(sl["u"][-1], ub, atol=1e-5)
    norms = np.linalg.norm(np.array(sl["u"]), axis=1)
    assert np.all(norms >= 1 - 1e-5) and norms[2] > np.linalg.norm(lin["u"][2])  # on the great circle, not the chord


def test_slerp_degenerate_cases():
    from vaekit.serve.explorer import slerp

    t = torch.linspace(0, 1, 3)
    a = torch.tensor([1.0, 0.0])
    assert torch.allclose(slerp(a, 2 * a, t)[1], torch.tensor([1.5, 0.0]))  # parallel: the line
    assert torch.allclose(slerp(torch.zeros(2), a, t)[1], torch.tensor([0.5, 0.0]))


def test_ladder_layers_and_resampling(ladder_client, ladder_explorer):
    info = ladder_client.get("/api/info").json()
    assert info["family"] == "ladder" and [l["dim"] for l in info["layers"]] == [3, 2] and info["latent_dim"] == 5
    u = [0.5, -0.5, 0.2, 1.0, -1.0]
    top = ladder_client.post("/api/resample", json={"u": u, "layer": 1, "seed": 1}).json()
    assert top["u"][0][:3] == pytest.approx(u[:3]) and top["u"][0][3:] != pytest.approx(u[3:])
    bottom = ladder_client.post("/api/resample", json={"u": u, "layer": 0, "seed": 1}).json()
    assert bottom["u"][0][3:] == pytest.approx(u[3:])
    assert ladder_client.post("/api/resample", json={"u": u, "layer": 2}).status_code == 422
    # u of a test point decodes to its reconstruction (the deterministic top-down pass at the posterior means)
    p = ladder_client.get("/api/points/2").json()
    got = _pixels(ladder_client.post("/api/decode", json={"u": [p["u"]]}).json()["images"][0]) / 255
    want = ladder_explorer.model.reconstruct(ladder_explorer.x[2:3])[0, 0].numpy()
    assert np.abs(got - want).max() < 2 / 255


def test_core_import_does_not_import_fastapi():
    code = "import sys, vaekit, vaekit.serve, vaekit.cli.core; vaekit.cli.core._parser(); print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_errors(vae_run, capsys, monkeypatch):
    from vaekit.cli import main
    from vaekit.process_state import preserve_process_state

    with preserve_process_state():  # main() tunes its process (denormals); the tests after need it as it was
        _cli_errors(main, vae_run, capsys, monkeypatch)


def _cli_errors(main, vae_run, capsys, monkeypatch) -> None:
    assert main(["serve", str(vae_run), "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", str(vae_run / "missing")]) == 2
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # the serve extra absent
    assert main(["serve", str(vae_run)]) == 2
    assert "pip install 'vaekit[serve]'" in capsys.readouterr().err


def test_a_model_without_one_latent_vector_is_a_one_line_refusal():
    """M2 has a discrete class group: serve names the capability it lacks (not an AttributeError)."""
    from vaekit.config import ModelConfig
    from vaekit.models.registry import build_family
    from vaekit.serve.explorer import Explorer

    m2 = build_family(ModelConfig(family="m2", latent_dim=2, hidden=[8], n_classes=3), (1, 4, 4))
    with pytest.raises(ValueError, match="vaekit serve needs a model with the capability 'continuous'.*M2 has"):
        Explorer(m2, torch.rand(5, 1, 4, 4))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height grey pixels, an empty IDAT, IEND: under 70 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 30_000])
def test_a_png_declaring_billions_of_pixels_is_a_413(client, side):
    """PIL refuses a header of over 2 * MAX_IMAGE_PIXELS itself (DecompressionBombError): still a 413, no 500."""
    png = _png_header_only(side, side)
    assert len(png) < 70
    r = client.post("/api/encode", json={"image": base64.b64encode(png).decode()})
    assert r.status_code == 413, r.text
    assert "2048" in r.json()["detail"]


def test_a_port_in_use_is_a_one_line_error(vae_run, capsys):
    import socket

    from vaekit.cli import main
    from vaekit.process_state import preserve_process_state

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with preserve_process_state():
            code = main(["serve", str(vae_run), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vaekit serve: error: ") and f"127.0.0.1:{port}" in last and "--port" in last, last
