package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// The gateway's upstream runs in a process of its own (this binary run
// again with upstreamEnv set), so that its CPU is counted apart from the
// load generator's and from Caddy's: in one process the three shares of
// the machine cannot be told apart.
const upstreamEnv = "SILO_BENCH_UPSTREAM"

func init() {
	if os.Getenv(upstreamEnv) == "" {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(l.Addr().String())
	length := []string{strconv.Itoa(len(upstreamBody))}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = jsonType
		h["Content-Length"] = length
		_, _ = w.Write(upstreamBody)
	})}
	_ = srv.Serve(l)
	os.Exit(1)
}

var jsonType = []string{"application/json"}

// upstreamProcess is a region that answers at once with upstreamBody, in
// its own process.
type upstreamProcess struct {
	cmd  *exec.Cmd
	addr string
}

func startUpstream() (*upstreamProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), upstreamEnv+"=1")
	cmd.Stderr = os.Stderr
	// Killed with the bench, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("upstream process: %v", err)
	}
	return &upstreamProcess{cmd: cmd, addr: strings.TrimSpace(line)}, nil
}

func (u *upstreamProcess) pid() int { return u.cmd.Process.Pid }

// Close stops the process.
func (u *upstreamProcess) Close() {
	_ = u.cmd.Process.Kill()
	_ = u.cmd.Wait()
}
