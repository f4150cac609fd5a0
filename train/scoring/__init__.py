"""How good a reconstruction is: the paper's normalised error, PSNR, SSIM and LPIPS, in one scoring function."""
