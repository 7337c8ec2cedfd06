/*
 * rig-rpmsg: talk to a remote rpmsg service from the guest.
 *
 *   rig-rpmsg CTRL NAME SRC DST [MESSAGE...]
 *
 * Creates an endpoint NAME (local address SRC, remote DST; -1 = any) through
 * the rpmsg_ctrl device CTRL (e.g. /dev/rpmsg_ctrl0), sends each MESSAGE as
 * one rpmsg message, prints each reply as "recv: <text>" (waiting up to
 * RIG_RPMSG_TIMEOUT_MS, default 5000, per reply), then destroys the endpoint.
 * Exit status: 0 when every message got a reply, 1 on a timeout, 2 on errors.
 * Built statically by provision.sh; part of the vhost-device guest rig.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/rpmsg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int read_attr(const char *dev, const char *attr, char *buf, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "/sys/class/rpmsg/%s/%s", dev, attr);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

/* Finds /dev/rpmsgN of the endpoint just created (by name and source). */
static int find_eptdev(const char *name, long src, char *out, size_t len)
{
	DIR *d = opendir("/sys/class/rpmsg");
	struct dirent *e;
	int found = -1;
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		char n[64], s[32];
		if (strncmp(e->d_name, "rpmsg", 5) || !strncmp(e->d_name, "rpmsg_ctrl", 10))
			continue;
		if (read_attr(e->d_name, "name", n, sizeof(n)) || strcmp(n, name))
			continue;
		if (src >= 0 && !read_attr(e->d_name, "src", s, sizeof(s)) && strtol(s, NULL, 0) != src)
			continue;
		snprintf(out, len, "/dev/%s", e->d_name);
		found = 0;
	}
	closedir(d);
	return found;
}

int main(int argc, char **argv)
{
	struct rpmsg_endpoint_info info;
	char dev[300];
	int timeout = 5000, missing = 0, i;
	const char *t = getenv("RIG_RPMSG_TIMEOUT_MS");

	if (argc < 5) {
		fprintf(stderr, "usage: %s CTRL NAME SRC DST [MESSAGE...]\n", argv[0]);
		return 2;
	}
	if (t)
		timeout = atoi(t);
	memset(&info, 0, sizeof(info));
	strncpy(info.name, argv[2], sizeof(info.name) - 1);
	info.src = (__u32)strtol(argv[3], NULL, 0);
	info.dst = (__u32)strtol(argv[4], NULL, 0);

	int ctrl = open(argv[1], O_RDWR);
	if (ctrl < 0) {
		fprintf(stderr, "rig-rpmsg: open %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (ioctl(ctrl, RPMSG_CREATE_EPT_IOCTL, &info) < 0) {
		fprintf(stderr, "rig-rpmsg: RPMSG_CREATE_EPT_IOCTL: %s\n", strerror(errno));
		return 2;
	}
	int fd = -1;
	for (i = 0; i < 100 && fd < 0; i++) {
		if (!find_eptdev(info.name, (long)(int)info.src, dev, sizeof(dev)))
			fd = open(dev, O_RDWR);
		if (fd < 0)
			usleep(20000);
	}
	if (fd < 0) {
		fprintf(stderr, "rig-rpmsg: no endpoint device for %s\n", info.name);
		return 2;
	}
	printf("endpoint: %s\n", dev);
	for (i = 5; i < argc; i++) {
		char buf[512];
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		if (write(fd, argv[i], strlen(argv[i])) < 0) {
			fprintf(stderr, "rig-rpmsg: write: %s\n", strerror(errno));
			return 2;
		}
		if (poll(&p, 1, timeout) <= 0) {
			printf("timeout waiting for a reply to \"%s\"\n", argv[i]);
			missing++;
			continue;
		}
		n = read(fd, buf, sizeof(buf) - 1);
		if (n < 0) {
			fprintf(stderr, "rig-rpmsg: read: %s\n", strerror(errno));
			return 2;
		}
		buf[n] = 0;
		printf("recv: %s\n", buf);
	}
	fflush(stdout);
	ioctl(fd, RPMSG_DESTROY_EPT_IOCTL);
	close(fd);
	close(ctrl);
	return missing ? 1 : 0;
}
