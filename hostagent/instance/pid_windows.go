package instance

import (
	"errors"
	"os"
)

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}

func processArgs(int) ([]string, error) {
	return nil, errors.New("command lines of other processes are not read on windows")
}
