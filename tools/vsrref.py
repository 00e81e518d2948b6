"""PyTorch reference definitions of the video models and deformable convolutions (developer tool).

Written from the official sources (BasicSR ``basicsr/archs/edvr_arch.py`` and ``arch_util.py``,
TDAN ``model.py`` and its DCNv1 extension); key names and forward semantics follow them exactly,
but widths are parameters so that tiny random-weight fixtures can be made. Never used by CI.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


# --------------------------------------------------------------------------------------------
# Deformable convolution
# --------------------------------------------------------------------------------------------


def dcnv1_sample(x, h, w):
    """Bilinear samples of x (C, H, W) at float positions h, w (any shape) with the original DCNv1
    kernel's rule: 0 unless 0 <= h < H and 0 <= w < W; rows/cols at or past the last are clamped
    to it without blending."""
    C, H, W = x.shape
    inside = (h >= 0) & (w >= 0) & (h < H) & (w < W)
    h_low = torch.floor(h)
    w_low = torch.floor(w)
    clamp_h = h_low >= H - 1
    clamp_w = w_low >= W - 1
    h_low = torch.where(clamp_h, torch.full_like(h_low, H - 1), h_low)
    w_low = torch.where(clamp_w, torch.full_like(w_low, W - 1), w_low)
    h = torch.where(clamp_h, h_low, h)
    w = torch.where(clamp_w, w_low, w)
    h_high = torch.where(clamp_h, h_low, h_low + 1)
    w_high = torch.where(clamp_w, w_low, w_low + 1)
    lh, lw = h - h_low, w - w_low
    hh, hw = 1 - lh, 1 - lw

    def at(yy, xx):
        yy = yy.clamp(0, H - 1).long()
        xx = xx.clamp(0, W - 1).long()
        return x[:, yy, xx]

    v = (hh * hw) * at(h_low, w_low) + (hh * lw) * at(h_low, w_high) + (lh * hw) * at(h_high, w_low) + (lh * lw) * at(h_high, w_high)
    return torch.where(inside, v, torch.zeros_like(v))


def dcnv1(x, offset, weight, stride=1, padding=1, groups=1):
    """DCNv1 with the original kernel's border rule (what TDAN's ConvOffset2d computes).
    x (N, C, H, W), offset (N, 2*groups*kh*kw, Ho, Wo) in the (dy, dx)-interleaved layout."""
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    K = kh * kw
    cpg = C // groups
    out = []
    for n in range(N):
        cols = torch.zeros(C, K, Ho, Wo, dtype=x.dtype)
        base_y = (torch.arange(Ho, dtype=x.dtype) * stride - padding).view(Ho, 1)
        base_x = (torch.arange(Wo, dtype=x.dtype) * stride - padding).view(1, Wo)
        for g in range(groups):
            for k in range(K):
                ky, kx = divmod(k, kw)
                dy = offset[n, 2 * (g * K + k)]
                dx = offset[n, 2 * (g * K + k) + 1]
                h = base_y + ky + dy
                w = base_x + kx + dx
                cols[g * cpg:(g + 1) * cpg, k] = dcnv1_sample(x[n, g * cpg:(g + 1) * cpg], h, w)
        out.append(torch.einsum("ock,ckhw->ohw", weight.reshape(O, C, K), cols))
    return torch.stack(out)


class ConvOffset2d(nn.Module):
    """TDAN's DCNv1 layer: a weight, no bias."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, num_deformable_groups=1):
        super().__init__()
        k = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
        self.stride = stride
        self.padding = padding if isinstance(padding, int) else padding[0]
        self.num_deformable_groups = num_deformable_groups
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, *k))

    def forward(self, x, offset):
        return dcnv1(x, offset, self.weight, self.stride, self.padding, self.num_deformable_groups)


class DCNv2Pack(nn.Module):
    """BasicSR's DCNv2Pack: offsets and mask from `conv_offset(feat)`, torchvision deform_conv2d."""

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=1, deformable_groups=1):
        super().__init__()
        self.padding = padding
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.conv_offset = nn.Conv2d(in_channels, deformable_groups * 3 * kernel_size * kernel_size, kernel_size, 1, padding)

    def forward(self, x, feat):
        out = self.conv_offset(feat)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, 1, self.padding, 1, mask)


# --------------------------------------------------------------------------------------------
# EDVR (BasicSR layout)
# --------------------------------------------------------------------------------------------


class ResidualBlockNoBN(nn.Module):
    def __init__(self, num_feat=64, res_scale=1):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


def make_layer(n, **kw):
    return nn.Sequential(*[ResidualBlockNoBN(**kw) for _ in range(n)])


class PCDAlignment(nn.Module):
    def __init__(self, num_feat=64, deformable_groups=8):
        super().__init__()
        self.offset_conv1 = nn.ModuleDict()
        self.offset_conv2 = nn.ModuleDict()
        self.offset_conv3 = nn.ModuleDict()
        self.dcn_pack = nn.ModuleDict()
        self.feat_conv = nn.ModuleDict()
        for i in range(3, 0, -1):
            level = f"l{i}"
            self.offset_conv1[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
            if i == 3:
                self.offset_conv2[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            else:
                self.offset_conv2[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
                self.offset_conv3[level] = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.dcn_pack[level] = DCNv2Pack(num_feat, num_feat, 3, padding=1, deformable_groups=deformable_groups)
            if i < 3:
                self.feat_conv[level] = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv1 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.cas_offset_conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.cas_dcnpack = DCNv2Pack(num_feat, num_feat, 3, padding=1, deformable_groups=deformable_groups)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, nbr, ref):
        up_off, up_feat = None, None
        for i in range(3, 0, -1):
            level = f"l{i}"
            off = self.lrelu(self.offset_conv1[level](torch.cat([nbr[i - 1], ref[i - 1]], dim=1)))
            if i == 3:
                off = self.lrelu(self.offset_conv2[level](off))
            else:
                off = self.lrelu(self.offset_conv2[level](torch.cat([off, up_off], dim=1)))
                off = self.lrelu(self.offset_conv3[level](off))
            feat = self.dcn_pack[level](nbr[i - 1], off)
            if i < 3:
                feat = self.feat_conv[level](torch.cat([feat, up_feat], dim=1))
            if i > 1:
                feat = self.lrelu(feat)
                up_off = self.upsample(off) * 2
                up_feat = self.upsample(feat)
        off = torch.cat([feat, ref[0]], dim=1)
        off = self.lrelu(self.cas_offset_conv2(self.lrelu(self.cas_offset_conv1(off))))
        return self.lrelu(self.cas_dcnpack(feat, off))


class TSAFusion(nn.Module):
    def __init__(self, num_feat=64, num_frame=5, center_frame_idx=2):
        super().__init__()
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.temporal_attn2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.feat_fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1, 1)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1 = nn.Conv2d(num_frame * num_feat, num_feat, 1)
        self.spatial_attn2 = nn.Conv2d(num_feat * 2, num_feat, 1)
        self.spatial_attn3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn4 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn5 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_l1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_l2 = nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1)
        self.spatial_attn_l3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.spatial_attn_add1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_attn_add2 = nn.Conv2d(num_feat, num_feat, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, aligned):
        b, t, c, h, w = aligned.size()
        emb_ref = self.temporal_attn1(aligned[:, self.center_frame_idx].clone())
        emb = self.temporal_attn2(aligned.view(-1, c, h, w)).view(b, t, -1, h, w)
        corr = torch.cat([torch.sum(emb[:, i] * emb_ref, 1).unsqueeze(1) for i in range(t)], dim=1)
        prob = torch.sigmoid(corr).unsqueeze(2).expand(b, t, c, h, w).contiguous().view(b, -1, h, w)
        aligned = aligned.view(b, -1, h, w) * prob
        feat = self.lrelu(self.feat_fusion(aligned))
        attn = self.lrelu(self.spatial_attn1(aligned))
        attn = self.lrelu(self.spatial_attn2(torch.cat([self.max_pool(attn), self.avg_pool(attn)], dim=1)))
        lvl = self.lrelu(self.spatial_attn_l1(attn))
        lvl = self.lrelu(self.spatial_attn_l2(torch.cat([self.max_pool(lvl), self.avg_pool(lvl)], dim=1)))
        lvl = self.upsample(self.lrelu(self.spatial_attn_l3(lvl)))
        attn = self.lrelu(self.spatial_attn3(attn)) + lvl
        attn = self.upsample(self.lrelu(self.spatial_attn4(attn)))
        attn = self.spatial_attn5(attn)
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        return feat * torch.sigmoid(attn) * 2 + attn_add


class PredeblurModule(nn.Module):
    def __init__(self, num_in_ch=3, num_feat=64, hr_in=False):
        super().__init__()
        self.hr_in = hr_in
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        if hr_in:
            self.stride_conv_hr1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
            self.stride_conv_hr2 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.stride_conv_l2 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.stride_conv_l3 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.resblock_l3 = ResidualBlockNoBN(num_feat=num_feat)
        self.resblock_l2_1 = ResidualBlockNoBN(num_feat=num_feat)
        self.resblock_l2_2 = ResidualBlockNoBN(num_feat=num_feat)
        self.resblock_l1 = nn.ModuleList([ResidualBlockNoBN(num_feat=num_feat) for _ in range(5)])
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x):
        l1 = self.lrelu(self.conv_first(x))
        if self.hr_in:
            l1 = self.lrelu(self.stride_conv_hr1(l1))
            l1 = self.lrelu(self.stride_conv_hr2(l1))
        l2 = self.lrelu(self.stride_conv_l2(l1))
        l3 = self.lrelu(self.stride_conv_l3(l2))
        l3 = self.upsample(self.resblock_l3(l3))
        l2 = self.resblock_l2_1(l2) + l3
        l2 = self.upsample(self.resblock_l2_2(l2))
        for i in range(2):
            l1 = self.resblock_l1[i](l1)
        l1 = l1 + l2
        for i in range(2, 5):
            l1 = self.resblock_l1[i](l1)
        return l1


class EDVR(nn.Module):
    def __init__(self, num_feat=64, num_frame=5, deformable_groups=8, num_extract_block=5,
                 num_reconstruct_block=10, hr_in=False, with_predeblur=False, with_tsa=True):
        super().__init__()
        self.center_frame_idx = num_frame // 2
        self.hr_in, self.with_predeblur, self.with_tsa = hr_in, with_predeblur, with_tsa
        if with_predeblur:
            self.predeblur = PredeblurModule(num_feat=num_feat, hr_in=hr_in)
            self.conv_1x1 = nn.Conv2d(num_feat, num_feat, 1, 1)
        else:
            self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
        self.feature_extraction = make_layer(num_extract_block, num_feat=num_feat)
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.pcd_align = PCDAlignment(num_feat=num_feat, deformable_groups=deformable_groups)
        if with_tsa:
            self.fusion = TSAFusion(num_feat=num_feat, num_frame=num_frame, center_frame_idx=self.center_frame_idx)
        else:
            self.fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1, 1)
        self.reconstruction = make_layer(num_reconstruct_block, num_feat=num_feat)
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, 64 * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    def forward(self, x):
        b, t, c, h, w = x.size()
        x_center = x[:, self.center_frame_idx].contiguous()
        if self.with_predeblur:
            l1 = self.conv_1x1(self.predeblur(x.view(-1, c, h, w)))
            if self.hr_in:
                h, w = h // 4, w // 4
        else:
            l1 = self.lrelu(self.conv_first(x.view(-1, c, h, w)))
        l1 = self.feature_extraction(l1)
        l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(l1))))
        l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(l2))))
        l1 = l1.view(b, t, -1, h, w)
        l2 = l2.view(b, t, -1, h // 2, w // 2)
        l3 = l3.view(b, t, -1, h // 4, w // 4)
        ci = self.center_frame_idx
        ref = [l1[:, ci].clone(), l2[:, ci].clone(), l3[:, ci].clone()]
        aligned = torch.stack([self.pcd_align([l1[:, i].clone(), l2[:, i].clone(), l3[:, i].clone()], ref)
                               for i in range(t)], dim=1)
        if not self.with_tsa:
            aligned = aligned.view(b, -1, h, w)
        feat = self.fusion(aligned)
        out = self.reconstruction(feat)
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.lrelu(self.conv_hr(out))
        out = self.conv_last(out)
        base = x_center if self.hr_in else F.interpolate(x_center, scale_factor=4, mode="bilinear", align_corners=False)
        return out + base


# --------------------------------------------------------------------------------------------
# TDAN (official TDAN_VSR, widths as parameters)
# --------------------------------------------------------------------------------------------


class Res_Block(nn.Module):
    def __init__(self, f=64):
        super().__init__()
        self.conv1 = nn.Conv2d(f, f, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(f, f, 3, 1, 1, bias=True)

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x)))


class Upsampler(nn.Sequential):
    def __init__(self, scale, f):
        m = []
        for _ in range({2: 1, 4: 2}[scale]):
            m.append(nn.Conv2d(f, 4 * f, 3, padding=1, bias=True))
            m.append(nn.PixelShuffle(2))
        super().__init__(*m)


class TDAN_VSR(nn.Module):
    def __init__(self, f=64, groups=8, n_extract=5, n_recon=10, num_frame=5):
        super().__init__()
        self.conv_first = nn.Conv2d(3, f, 3, padding=1, bias=True)
        self.residual_layer = nn.Sequential(*[Res_Block(f) for _ in range(n_extract)])
        self.relu = nn.ReLU(inplace=True)
        self.cr = nn.Conv2d(2 * f, f, 3, padding=1, bias=True)
        self.off2d_1 = nn.Conv2d(f, 18 * groups, 3, padding=1, bias=True)
        self.dconv_1 = ConvOffset2d(f, f, 3, padding=1, num_deformable_groups=groups)
        self.off2d_2 = nn.Conv2d(f, 18 * groups, 3, padding=1, bias=True)
        self.deconv_2 = ConvOffset2d(f, f, 3, padding=1, num_deformable_groups=groups)
        self.off2d_3 = nn.Conv2d(f, 18 * groups, 3, padding=1, bias=True)
        self.deconv_3 = ConvOffset2d(f, f, 3, padding=1, num_deformable_groups=groups)
        self.off2d = nn.Conv2d(f, 18 * groups, 3, padding=1, bias=True)
        self.dconv = ConvOffset2d(f, f, (3, 3), padding=(1, 1), num_deformable_groups=groups)
        self.recon_lr = nn.Conv2d(f, 3, 3, padding=1, bias=True)
        self.fea_ex = nn.Sequential(nn.Conv2d(num_frame * 3, f, 3, padding=1, bias=True), nn.ReLU())
        self.recon_layer = nn.Sequential(*[Res_Block(f) for _ in range(n_recon)])
        self.up = nn.Sequential(Upsampler(4, f), nn.Conv2d(f, 3, 3, padding=1, bias=False))

    def align(self, x, x_center):
        y = []
        num = x.size(1)
        center = num // 2
        ref = x[:, center].clone()
        for i in range(num):
            if i == center:
                y.append(x_center.unsqueeze(1))
                continue
            supp = x[:, i]
            fea = self.cr(torch.cat([ref, supp], dim=1))
            fea = self.dconv_1(fea, self.off2d_1(fea))
            fea = self.deconv_2(fea, self.off2d_2(fea))
            fea = self.deconv_3(supp, self.off2d_3(fea))
            aligned = self.dconv(fea, self.off2d(fea))
            y.append(self.recon_lr(aligned).unsqueeze(1))
        return torch.cat(y, dim=1)

    def forward(self, x):
        b, num, ch, h, w = x.size()
        center = num // 2
        out = self.relu(self.conv_first(x.view(-1, ch, h, w)))
        out = self.residual_layer(out).view(b, num, -1, h, w)
        lrs = self.align(out, x[:, center])
        fea = self.fea_ex(lrs.view(b, -1, h, w))
        return self.up(self.recon_layer(fea)), lrs


# --------------------------------------------------------------------------------------------
# Temporal edge policies
# --------------------------------------------------------------------------------------------


def basicsr_indices(crt, n, num_frames, padding):
    """BasicSR generate_frame_indices."""
    max_idx = n - 1
    half = num_frames // 2
    out = []
    for i in range(crt - half, crt + half + 1):
        if i < 0:
            p = {"replicate": 0, "reflection": -i, "reflection_circle": crt + half - i}[padding]
        elif i > max_idx:
            p = {"replicate": max_idx, "reflection": max_idx * 2 - i, "reflection_circle": (crt - half) - (i - max_idx)}[padding]
        else:
            p = i
        out.append(p)
    return out


def tdan_indices(crt, n, num_frames=5):
    """TDAN eval.py: k < 0 -> -k, k >= n -> n - 3."""
    half = num_frames // 2
    return [(-k if k < 0 else (n - 3 if k >= n else k)) for k in range(crt - half, crt + half + 1)]
