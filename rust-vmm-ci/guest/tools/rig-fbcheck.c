/*
 * rig-fbcheck [FB]: read back a framebuffer device (default /dev/fb0) and
 * print one line:
 *   fb=/dev/fb0 width=W height=H bpp=B stride=S nonzero=N checksum=C
 * where nonzero counts pixels with any non-zero byte and checksum is an FNV-1a
 * hash of the visible pixels. A guest script compares it with what it drew
 * (rig-fbfill) or with what the host put on the display.
 * Built statically by provision.sh; part of the vhost-device guest rig.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/fb0";
	struct fb_var_screeninfo var;
	struct fb_fix_screeninfo fix;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || ioctl(fd, FBIOGET_VSCREENINFO, &var) || ioctl(fd, FBIOGET_FSCREENINFO, &fix)) {
		fprintf(stderr, "rig-fbcheck: %s: %s\n", path, strerror(errno));
		return 2;
	}
	size_t bypp = (var.bits_per_pixel + 7) / 8, stride = fix.line_length;
	size_t row_bytes = var.xres * bypp;
	unsigned char *row = malloc(stride);
	uint64_t hash = 1469598103934665603ULL, nonzero = 0;
	if (!row)
		return 2;
	for (unsigned y = 0; y < var.yres; y++) {
		size_t got = 0;
		while (got < stride) {
			ssize_t n = read(fd, row + got, stride - got);
			if (n <= 0) {
				fprintf(stderr, "rig-fbcheck: short read at row %u\n", y);
				return 2;
			}
			got += (size_t)n;
		}
		for (size_t x = 0; x < row_bytes; x += bypp) {
			int any = 0;
			for (size_t b = 0; b < bypp; b++) {
				hash = (hash ^ row[x + b]) * 1099511628211ULL;
				any |= row[x + b];
			}
			nonzero += any != 0;
		}
	}
	printf("fb=%s width=%u height=%u bpp=%u stride=%zu nonzero=%llu checksum=%016llx\n", path,
	       var.xres, var.yres, var.bits_per_pixel, stride, (unsigned long long)nonzero,
	       (unsigned long long)hash);
	return 0;
}
