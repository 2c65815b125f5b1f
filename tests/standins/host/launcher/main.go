// Launcher of the stand-in convex-local-backend (convex-selfhost tests; not Convex).
//
// build_binary.py appends the stand-in's zip application to this program, so the file it
// writes is a real ELF executable like upstream's binary: while it runs, the kernel
// refuses to open it for writing (ETXTBSY), which a shebang script would not reproduce.
// It runs `python3 <this file> ARGS...` (Python reads the zip appended to the ELF),
// forwards signals to it, and exits as it did.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "convex-local-backend stand-in: %v\n", err)
		os.Exit(1)
	}
	python := os.Getenv("CONVEX_STANDIN_PYTHON")
	if python == "" {
		python = "python3"
	}
	cmd := exec.Command(python, append([]string{self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "convex-local-backend stand-in: cannot run %s: %v\n", python, err)
		os.Exit(1)
	}
	go func() {
		for s := range signals {
			_ = cmd.Process.Signal(s)
		}
	}()
	_ = cmd.Wait()
	if status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		// Die of the same signal, as the process itself did.
		signal.Reset(status.Signal())
		_ = syscall.Kill(os.Getpid(), status.Signal())
		select {}
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
