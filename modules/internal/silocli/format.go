package silocli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// newTable is the one table layout: columns two spaces apart, left aligned.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// printJSON prints an answer of the API as it came, one document per line
// group: scripts pipe it to jq.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(append(bytes.TrimSpace(raw), '\n'))
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// age prints seconds the way an operator reads them: 850ms, 42s, 3m05s,
// 2h04m, 3d04h. Two units at most; the third changes nothing on call.
func age(seconds float64) string {
	if seconds < 0 {
		seconds = 0
	}
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// stamp prints a time in UTC to the second; "-" for none.
func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// until prints when something is due, relative to now: "now", "in 48s".
func until(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := t.Sub(now)
	if d <= time.Second {
		return "now"
	}
	return "in " + age(d.Seconds())
}

// cell prints a value that may be absent as "-", so columns stay aligned
// and an empty field is visible.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ") // one line per row
	if s == "" {
		return "-"
	}
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func status(code int) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(code)
}

func pauseCell(p *pause) string {
	if p == nil {
		return "-"
	}
	s := "paused"
	if p.Kind == "region" && p.Name != "" {
		s = "region " + p.Name + " paused"
	}
	if p.Reason != "" {
		s += ": " + p.Reason
	}
	return cell(s)
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}
