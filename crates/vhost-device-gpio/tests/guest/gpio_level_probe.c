// SPDX-License-Identifier: GPL-2.0
/*
 * A minimal consumer of a level-triggered GPIO interrupt, for the
 * vhost-device-gpio guest scenario: userspace (gpiomon, the cdev uAPI) can
 * only ask for edges, so this module asks for a level interrupt on one line
 * of a chip found by label and counts how often its handler runs.
 *
 * Parameters: chip (label), line (offset), low (1 = active low).
 * The count is in /sys/module/gpio_level_probe/parameters/count.
 */
#include <linux/delay.h>
#include <linux/gpio/consumer.h>
#include <linux/gpio/driver.h>
#include <linux/interrupt.h>
#include <linux/module.h>

static char *chip = "virtio0";
module_param(chip, charp, 0444);
static int line;
module_param(line, int, 0444);
static int low;
module_param(low, int, 0444);
static int count;
module_param(count, int, 0444);

static struct gpio_device *gdev;
static int irq = -1;

static irqreturn_t probe_thread(int irq, void *data)
{
	WRITE_ONCE(count, READ_ONCE(count) + 1);
	/* Pace the re-fires of a held level. */
	msleep(20);
	return IRQ_HANDLED;
}

static int __init probe_init(void)
{
	struct gpio_desc *desc;
	int ret;

	gdev = gpio_device_find_by_label(chip);
	if (!gdev)
		return -ENODEV;
	desc = gpio_device_get_desc(gdev, line);
	if (IS_ERR(desc)) {
		ret = PTR_ERR(desc);
		goto put;
	}
	irq = gpiod_to_irq(desc);
	if (irq < 0) {
		ret = irq;
		goto put;
	}
	ret = request_threaded_irq(irq, NULL, probe_thread,
				   (low ? IRQF_TRIGGER_LOW : IRQF_TRIGGER_HIGH) | IRQF_ONESHOT,
				   "gpio-level-probe", NULL);
	if (ret)
		goto put;
	pr_info("gpio-level-probe: %s line %d irq %d level %s\n", chip, line, irq,
		low ? "low" : "high");
	return 0;
put:
	gpio_device_put(gdev);
	return ret;
}

static void __exit probe_exit(void)
{
	free_irq(irq, NULL);
	gpio_device_put(gdev);
}

module_init(probe_init);
module_exit(probe_exit);
MODULE_DESCRIPTION("Counts a level-triggered GPIO interrupt (vhost-device-gpio test)");
MODULE_LICENSE("GPL");
