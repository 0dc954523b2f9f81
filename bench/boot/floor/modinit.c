/* A reference floor of the boot benchmark: the C floor's init, plus what
 * any init of Debian's modular kernel must do before berth's agent can
 * answer. It loads the modules berth loads before it answers (the virtio
 * buses, console, block, net and RNG drivers, and ext4), mounts the data
 * disk, and powers off. The modules come in two lists, one path per line
 * in dependency order: /modules.0 (ext4's chain) and /modules.1 (the
 * rest), loaded by two processes at once, as berth's loader runs its
 * chains on both CPUs. Built static by bench/boot. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void load(const char *list) {
	char line[512];
	FILE *f = fopen(list, "r");
	if (!f)
		fprintf(stderr, "floor: %s: %m\n", list);
	while (f && fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0])
			continue;
		int fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "floor: %s: %m\n", line);
			continue;
		}
		if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
			fprintf(stderr, "floor: loading %s: %m\n", line);
		close(fd);
	}
}

int main(void) {
	pid_t child = fork();
	if (child == 0) {
		load("/modules.1");
		_exit(0);
	}
	load("/modules.0");
	if (child > 0)
		waitpid(child, NULL, 0);
	if (mount("devtmpfs", "/dev", "devtmpfs", 0, "") != 0)
		fprintf(stderr, "floor: mounting /dev: %m\n");
	/* The disk appears once virtio_blk has probed it. */
	for (int i = 0; i < 2500 && access("/dev/vda", F_OK) != 0; i++)
		usleep(2000);
	if (mount("/dev/vda", "/mnt", "ext4", 0, "") != 0)
		fprintf(stderr, "floor: mounting /dev/vda: %m\n");
	else
		printf("floor: data disk mounted\n");
	fflush(stdout);
	umount("/mnt");
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
