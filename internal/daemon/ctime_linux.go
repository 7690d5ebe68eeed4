package daemon

import (
	"strconv"
	"syscall"
)

func ctime(st *syscall.Stat_t) string { return ":" + strconv.FormatInt(st.Ctim.Nano(), 10) }
