"""Connectivity matrices and the fusion op."""

import pytest
import torch

from auxnas.methods.aux_nas import Fusion, connectivity_matrix, links_of


def test_authors_vit_search_space_has_24_links_per_direction():
    matrix = connectivity_matrix([3, 3, 3, 3], "layer", window=3)
    assert int(matrix.sum()) == 24
    # block-diagonal, lower triangular within each stage of 3
    assert matrix[2].tolist()[:4] == [True, True, True, False]
    assert not matrix[3, 2]  # no link across a stage boundary
    assert not matrix[0, 1]  # never from a later cell


def test_vgg16_layer_and_stage_links():
    assert int(connectivity_matrix([2, 2, 3, 3, 3]).sum()) == 24
    stage = connectivity_matrix([2, 2, 3, 3, 3], "stage")
    assert links_of(stage) == [(1, 1), (3, 3), (6, 6), (9, 9), (12, 12)]


def test_window_limits_depth():
    matrix = connectivity_matrix([6], "layer", window=2)
    assert links_of(matrix)[:3] == [(0, 0), (1, 0), (1, 1)]
    assert not matrix[5, 3]


def test_fusion_starts_as_identity_on_maps_and_tokens():
    x, y = torch.randn(2, 8, 6, 6), torch.randn(2, 4, 3, 3)
    fusion = Fusion(8, [4, 4], "map")
    assert torch.equal(fusion(x, [y, y], torch.tensor([0.5, 0.7])), x)
    tokens = torch.randn(2, 5, 8)
    fusion = Fusion(8, [8], "tokens")
    assert torch.equal(fusion(tokens, [torch.randn(2, 5, 8)], torch.tensor([0.5])), tokens)


def test_fusion_mixes_weighted_resized_sources():
    x, y = torch.zeros(1, 2, 4, 4), torch.ones(1, 1, 2, 2)
    fusion = Fusion(2, [1], "map")
    with torch.no_grad():
        fusion.proj.weight.fill_(1.0)
    out = fusion(x, [y], torch.tensor([0.25]))
    assert torch.allclose(out, torch.full_like(x, 0.25))
    assert torch.equal(fusion(x, [y], torch.tensor([0.0])), x)


def test_bn_relu_post_is_applied():
    fusion = Fusion(3, [3], "map", norm="bn_relu").eval()
    out = fusion(-torch.ones(1, 3, 2, 2), [torch.ones(1, 3, 2, 2)], torch.tensor([1.0]))
    assert (out >= 0).all()


@pytest.mark.parametrize("feature_format", ["map", "tokens"])
def test_fusion_init_passes_equally_wide_sources_in_from_the_start(feature_format):
    """init 0.2 over two sources: each as wide as the target adds 0.1 x its strength-weighted features; a source of
    another width starts at zero."""
    fusion = Fusion(8, [8, 4, 8], feature_format, init=0.2)
    shape = (2, 8, 3, 3) if feature_format == "map" else (2, 5, 8)
    narrow = (2, 4, 3, 3) if feature_format == "map" else (2, 5, 4)
    x, y1, y2, y3 = torch.randn(shape), torch.randn(shape), torch.randn(narrow), torch.randn(shape)
    out = fusion(x, [y1, y2, y3], torch.tensor([0.5, 1.0, 1.0]))
    torch.testing.assert_close(out, x + 0.2 / 3 * (0.5 * y1 + y3))
    assert torch.equal(Fusion(8, [8], feature_format)(x, [y1], torch.tensor([1.0])), x)  # default 0: no effect
