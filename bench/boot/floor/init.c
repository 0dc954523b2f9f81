/* The floor of the boot benchmark: an init that powers the VM off at once.
 * Built static by bench/boot, so the kernel runs it with nothing else. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
