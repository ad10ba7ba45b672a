import itertools

import pytest
import torch

from baton.models.quantization import EuclideanCodebook, ResidualVectorQuantizer


def latents(seed: int = 0, batch: int = 4, dim: int = 8, frames: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, frames, generator=generator)


def buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in module.named_buffers()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_first_training_batch_initialises_the_codebook_from_the_data():
    torch.manual_seed(0)
    codebook = EuclideanCodebook(dim=8, bins=16, kmeans_iters=0)
    x = latents()
    codebook.eval()(x)
    assert not codebook.initialized and codebook.embed.abs().sum() == 0
    codebook.train()(x)
    assert codebook.initialized
    flat = x.transpose(1, 2).reshape(-1, 8)
    # Without k-means, the initial codes are data vectors, and with decay=1 the EMA step
    # moves them only by the Laplace smoothing.
    first = EuclideanCodebook(dim=8, bins=16, kmeans_iters=0, decay=1.0)
    torch.manual_seed(0)
    first.train()(x)
    assert torch.cdist(first.embed, flat).min(dim=1).values.max() < 1e-3


def test_kmeans_init_beats_random_init():
    x = latents(frames=256)

    def error(kmeans_iters: int) -> float:
        torch.manual_seed(0)
        codebook = EuclideanCodebook(dim=8, bins=32, kmeans_iters=kmeans_iters, decay=1.0)
        quantized, _ = codebook.train()(x)
        return (quantized - x).pow(2).mean().item()

    assert error(10) < 0.9 * error(0)


def test_ema_updates_codebook_in_train_mode_only():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=8, n_q=2, bins=16)
    rvq.train()(latents(0), frame_rate=50)
    before = buffers(rvq)
    rvq.eval()(latents(1), frame_rate=50)
    assert_same(before, buffers(rvq))
    rvq.train()(latents(1), frame_rate=50)
    assert not torch.equal(before["layers.0.embed"], rvq.layers[0].embed)
    assert not torch.equal(before["layers.1.cluster_size"], rvq.layers[1].cluster_size)


def test_ema_tracks_the_mean_of_assigned_vectors():
    torch.manual_seed(0)
    centres = torch.tensor([[4.0, 0.0], [-4.0, 0.0]])
    codebook = EuclideanCodebook(
        dim=2, bins=2, decay=0.8, kmeans_iters=5, threshold_ema_dead_code=0
    )
    codebook.train()
    codebook(centres.repeat(32, 1).T.reshape(1, 2, 64))
    shift = torch.tensor([0.0, 1.5])
    for _ in range(60):
        noise = 0.1 * torch.randn(64, 2)
        codebook((centres.repeat(32, 1) + shift + noise).T.reshape(1, 2, 64))
    ordered = codebook.embed[codebook.embed[:, 0].argsort(descending=True)]
    torch.testing.assert_close(ordered, centres + shift, atol=0.05, rtol=0)


def test_dead_codes_are_replaced_by_batch_vectors():
    x = latents(frames=128)
    flat = x.transpose(1, 2).reshape(-1, 8)

    def codebook_with_a_dead_code(threshold: float) -> EuclideanCodebook:
        torch.manual_seed(0)
        codebook = EuclideanCodebook(dim=8, bins=16, threshold_ema_dead_code=threshold).train()
        codebook(x)
        with torch.no_grad():  # a code far from all data, never chosen
            codebook.embed[3] = 1000.0
            codebook.embed_sum[3] = 1000.0 * codebook.cluster_size[3]
            codebook.cluster_size[3] = 0.0
        codebook(x)
        return codebook

    kept = codebook_with_a_dead_code(threshold=0.0)
    assert (kept.embed[3] > 900).all()
    replaced = codebook_with_a_dead_code(threshold=2.0)
    assert (flat == replaced.embed[3]).all(dim=1).any(), "dead code should be a vector of the batch"
    assert replaced.cluster_size[3] == 2.0
    torch.testing.assert_close(replaced.embed_sum[3], 2.0 * replaced.embed[3])


def test_straight_through_gradient_reaches_the_input():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=8, n_q=3, bins=16).train()
    x = latents().requires_grad_()
    result = rvq(x, frame_rate=50)
    result.quantized.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))
    x.grad = None
    rvq(x, frame_rate=50).commit_loss.backward()
    assert x.grad.abs().sum() > 0


def test_result_shapes_and_encode_decode_match_forward():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=8, n_q=3, bins=16)
    rvq.train()(latents(0), frame_rate=50)
    rvq.eval()
    x = latents(1)
    result = rvq(x, frame_rate=50, n_q=2)
    assert result.codes.shape == (4, 2, 64) and result.codes.dtype == torch.int64
    assert result.quantized.shape == x.shape
    assert result.commit_loss.shape == ()
    torch.testing.assert_close(rvq.encode(x, n_q=2), result.codes, rtol=0, atol=0)
    torch.testing.assert_close(rvq.decode(result.codes), result.quantized, rtol=0, atol=0)


def test_bandwidth_and_n_q_range():
    rvq = ResidualVectorQuantizer(dimension=8, n_q=4, bins=1024)
    assert rvq.bandwidth(frame_rate=50) == pytest.approx(2.0)
    assert rvq(latents(), frame_rate=50, n_q=1).bandwidth == pytest.approx(0.5)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="1 to 4 codebooks"):
            rvq(latents(), frame_rate=50, n_q=bad)


def test_more_codebooks_quantize_more_precisely():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=8, n_q=4, bins=32).train()
    x = latents(frames=256)
    for _ in range(5):
        rvq(x, frame_rate=50)
    rvq.eval()
    errors = [
        (rvq(x, frame_rate=50, n_q=k).quantized - x).pow(2).mean().item() for k in (1, 2, 3, 4)
    ]
    assert all(coarse > 1.05 * fine for coarse, fine in itertools.pairwise(errors)), errors


def test_training_with_fewer_codebooks_leaves_the_others_untouched():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dimension=8, n_q=4, bins=16).train()
    rvq(latents(), frame_rate=50, n_q=2)
    assert [bool(layer.initialized) for layer in rvq.layers] == [True, True, False, False]


def test_state_dict_captures_everything_for_an_exact_resume():
    x0, x1 = latents(0), latents(1)
    torch.manual_seed(0)
    original = ResidualVectorQuantizer(dimension=8, n_q=2, bins=16).train()
    original(x0, frame_rate=50)
    restored = ResidualVectorQuantizer(dimension=8, n_q=2, bins=16).train()
    restored.load_state_dict(original.state_dict())
    assert_same(buffers(original), buffers(restored))
    for model in (original, restored):
        torch.manual_seed(1)
        for _ in range(3):
            model(x1 * 3, frame_rate=50)  # a shifted batch: dead codes get replaced
    assert_same(buffers(original), buffers(restored))


def test_deterministic_for_a_given_seed():
    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(123)
        rvq = ResidualVectorQuantizer(dimension=8, n_q=3, bins=64).train()
        for step in range(4):
            rvq(latents(step) * (1 + step), frame_rate=50)
        return buffers(rvq)

    assert_same(run(), run())
