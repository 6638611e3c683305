package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procCPU is the user+system CPU time a process has used so far.
func procCPU(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// procStat is /proc/<pid>/stat split into the fields after the command
// name (which may hold spaces): field 0 is the state, 1 the parent pid.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

// treeCPU is the CPU time of a process and its direct children, such as a
// PostgreSQL postmaster and its backends. A child that has exited is
// counted no more, so measure while pooled connections stay open.
func treeCPU(root int) time.Duration {
	total := procCPU(root)
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	want := strconv.Itoa(root)
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == root {
			continue
		}
		if f := procStat(pid); len(f) > 1 && f[1] == want {
			total += procCPU(pid)
		}
	}
	return total
}

// selfCPU is the CPU time of this process: the load generator's share of
// the machine.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter samples the CPU time of the processes taking part in a
// measurement, so a table can say where a 2-CPU machine's time went.
type cpuMeter struct {
	caddy, postgres int // pids; 0 when not part of the run
}

type cpuSample struct{ caddy, postgres, client time.Duration }

func (m cpuMeter) sample() cpuSample {
	var s cpuSample
	if m.caddy != 0 {
		s.caddy = procCPU(m.caddy)
	}
	if m.postgres != 0 {
		s.postgres = treeCPU(m.postgres)
	}
	s.client = selfCPU()
	return s
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{s.caddy - o.caddy, s.postgres - o.postgres, s.client - o.client}
}

func (s cpuSample) add(o cpuSample) cpuSample {
	return cpuSample{s.caddy + o.caddy, s.postgres + o.postgres, s.client + o.client}
}

// caddyPerRow is the Caddy process's CPU µs per row, unrounded.
func (s cpuSample) caddyPerRow(n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(s.caddy.Nanoseconds()) / 1e3 / float64(n)
}

// perRow formats each process's CPU µs per row (or request), "-" for a
// process not in the run.
func (s cpuSample) perRow(n int) (caddy, postgres, client string) {
	f := func(d time.Duration, in bool) string {
		if !in || n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(d.Microseconds())/float64(n))
	}
	return f(s.caddy, s.caddy > 0), f(s.postgres, s.postgres > 0), f(s.client, true)
}
