# The demo's guest side (dash, run by the rig's /init). For each device:
# check that its virtio driver bound, do something the host takes part in,
# and write a row `DEMO|device|what the guest did|PASS or FAIL` on the
# serial console and on the gpu's console (tty1). The host's own checks are
# added to the table on the host. Every wait is bounded.

# A row: for the host on the serial console, aligned for people on tty1
# (and kept in /tmp/screen, to draw the whole table again at the end).
row() {
    printf 'DEMO|%s|%s|%s\n' "$1" "$2" "$3"
    printf ' %-10s %-5s %s\n' "$1" "$3" "$2" | tee -a /tmp/screen > /dev/tty1
    [ "$3" != PASS ] || passed=$((passed + 1))
    total=$((total + 1))
}
passed=0
total=0

# The driver bound to virtio device id $1, if any.
bound() {
    for d in /sys/bus/virtio/devices/*; do
        [ "$(cat "$d/device")" = "$1" ] && [ -e "$d/driver" ] && { basename "$(readlink "$d/driver")"; return 0; }
    done
    return 1
}

# waitfor TRIES COMMAND...: retries COMMAND every 0.1 s.
waitfor() {
    n=$1; shift
    until "$@"; do
        n=$((n - 1)); [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}

# try NAME ID FUNCTION: a row from FUNCTION's last line of output.
try() {
    echo "DEMO-STEP $1"
    drv=$(bound "$2") || { row "$1" "no driver bound to virtio id $2" FAIL; return; }
    if out=$($3 2>&1); then verdict=PASS; else verdict=FAIL; fi
    echo "$out" | sed "s/^/[$1] /"
    row "$1" "$drv: $(echo "$out" | tail -n 1 | tr '|' '/')" "$verdict"
}

demo_i2c() {
    bus=$(for d in /sys/bus/i2c/devices/i2c-*; do case "$(cat "$d/name")" in i2c_virtio*) echo "${d##*/i2c-}";; esac; done)
    [ -n "$bus" ] || { echo "no virtio i2c adapter"; return 1; }
    a=$(i2cget -y "$bus" 0x50 0x00) && b=$(i2cget -y "$bus" 0x50 0x01) || { echo "EEPROM read failed"; return 1; }
    [ "$a $b" = "0x76 0x68" ] || { echo "EEPROM starts $a $b, not the host's 0x76 0x68"; return 1; }
    i2cset -y "$bus" 0x50 0x20 0x5a && c=$(i2cget -y "$bus" 0x50 0x20) || { echo "EEPROM write failed"; return 1; }
    [ "$c" = 0x5a ] || { echo "wrote 0x5a at 0x20, read back $c"; return 1; }
    echo "read the host's EEPROM text (0x76 0x68 = 'vh'), wrote 0x5a at 0x20"
}

demo_gpio() {
    chip=$(gpiodetect | sed -n 's/^\(gpiochip[0-9]*\) \[virtio[0-9]*\].*/\1/p' | head -n 1)
    [ -n "$chip" ] || { echo "no virtio gpiochip"; return 1; }
    waitfor 100 sh -c "gpioget -c $chip --numeric 1 | grep -qx 1" || { echo "line 1 never went high"; return 1; }
    timeout 60 gpiomon -c "$chip" -e rising -n 1 -F 'line %o %E' 2 > /tmp/gpiomon &
    m=$!
    waitfor 100 sh -c "gpioinfo -c $chip 2 | grep -q gpiomon" || { echo "gpiomon did not start"; return 1; }
    sleep 0.5
    gpioset -c "$chip" 0=1 &
    s=$!
    wait "$m"
    kill "$s"
    grep -q 'line 2 rising' /tmp/gpiomon || { echo "no edge from the host: $(cat /tmp/gpiomon)"; return 1; }
    echo "read line 1 high (the host's), set line 0, gpiomon saw the host raise line 2"
}

demo_sound() {
    arecord -q -D hw:0,0 -f S16_LE -r 48000 -c 2 --period-size=960 --buffer-size=7680 -d 1 /tmp/rec.wav \
        || { echo "arecord failed"; return 1; }
    nz=$(tail -c +45 /tmp/rec.wav | tr -d '\000' | wc -c)
    [ "$nz" -gt 1000 ] || { echo "recorded silence"; return 1; }
    aplay -q -D hw:0,0 --period-size=960 --buffer-size=7680 /tmp/rec.wav || { echo "aplay failed"; return 1; }
    echo "recorded 1 s from the host's WAV ($nz non-zero bytes), played it back"
}

demo_gpu() {
    echo "console on $(cat /sys/class/graphics/fb0/name), $(tr , x < /sys/class/graphics/fb0/virtual_size)"
}

demo_can() {
    ip link set can0 up || { echo "can0 did not come up"; return 1; }
    candump -L -n 1 -T 20000 can0,321:7FF > /tmp/candump &
    d=$!
    # Sent until the host's answer arrives: candump may start late.
    i=0
    while [ $i -lt 10 ] && ! [ -s /tmp/candump ]; do
        cansend can0 123#DEADBEEF
        sleep 1
        i=$((i + 1))
    done
    wait "$d"
    grep -q ' can0 321#C0FFEE' /tmp/candump || { echo "no answer from the host: $(cat /tmp/candump)"; return 1; }
    echo "sent 123#DEADBEEF on can0, received the host's 321#C0FFEE"
}

demo_rpmsg() {
    waitfor 100 sh -c 'grep -qs demo-echo /sys/bus/rpmsg/devices/*/name' || { echo "no demo-echo channel"; return 1; }
    r=$(rig-rpmsg /dev/rpmsg_ctrl0 demo-ept 3000 0x402 "hello from the guest" 2>&1) || { echo "$r" | tail -n 1; return 1; }
    echo "$r" | grep -qx 'recv: echo: hello from the guest' || { echo "got $r"; return 1; }
    echo "sent 'hello from the guest' on demo-echo, got 'echo: hello from the guest' back"
}

# Only with `cargo xtask demo --virgl` (DEMO_VIRGL=1): the gpu renders
# with virglrenderer on the host, and Mesa's virgl driver draws a GLES
# triangle, checks it with glReadPixels and shows it for a screendump.
demo_virgl() {
    f=$(ls /sys/kernel/debug/dri/*/virtio-gpu-features 2>/dev/null | head -n 1)
    grep -Eq '^virgl +: +yes' "$f" || { echo "virgl not negotiated"; return 1; }
    export MESA_SHADER_CACHE_DISABLE=true
    out=$(rig-gltri -d /dev/dri/card0 -r virgl -x 'sleep 1; rig-screendump virgl' 2>&1) || { echo "$out" | tail -n 1; return 1; }
    echo "$out"
    echo "Mesa drew a GLES triangle on $(echo "$out" | sed -n 's/^renderer: //p'), $(echo "$out" | grep -c '^pixel .* ok$') pixels read back right"
}

demo_bluetooth() {
    hciconfig hci0 up && hciconfig hci0 piscan || { echo "hci0 did not come up"; return 1; }
    hcitool -i hci0 scan > /tmp/scan
    peer=$(sed -n 's/^\s*\(52:54:00:B7:00:01\)\s*\(.*\)$/\1 \2/p' /tmp/scan)
    [ -n "$peer" ] || { echo "inquiry found no host controller: $(cat /tmp/scan)"; return 1; }
    echo "hci0 up and discoverable; inquiry found the host's $peer"
}

printf '\n vhost-device demo: one guest, seven vhost-user devices, each with the host taking part\n\n %-10s %-5s %s\n' \
    device guest 'what the guest did (the host checks its side too: see the table cargo xtask demo prints)' \
    | tee /tmp/screen > /dev/tty1
sleep 1
try i2c 0x0022 demo_i2c
try gpio 0x0029 demo_gpio
try sound 0x0019 demo_sound
try gpu 0x0010 demo_gpu
try can 0x0024 demo_can
try rpmsg 0x0007 demo_rpmsg
try bluetooth 0x0028 demo_bluetooth
[ -z "$DEMO_VIRGL" ] || try virgl 0x0010 demo_virgl
echo "DEMO-STEP screendump"
# The whole table again, on a clean screen (a GL program's mode set may
# have drawn over the console).
{ printf '\033[H\033[2J'; cat /tmp/screen; printf '\n %s of %s rows passed on the guest side\n' "$passed" "$total"; } > /dev/tty1
sleep 1
rig-screendump demo
