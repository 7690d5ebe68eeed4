package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	colorOf = map[string]color.RGBA{
		colDirect:   {0x9e, 0x9e, 0x9e, 0xff},
		colNexmux:   {0x1f, 0x77, 0xb4, 0xff},
		colSonatype: {0xff, 0x7f, 0x0e, 0xff},
		colTuned:    {0x2c, 0xa0, 0x2c, 0xff},
		colFloor:    {0x8c, 0x56, 0x4b, 0xff},
	}
	colorMany = color.RGBA{0x94, 0x67, 0xbd, 0xff}
	ink       = color.RGBA{0x22, 0x22, 0x22, 0xff}
	faint     = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

type bar struct {
	label string
	value float64
	text  string
	color color.RGBA
}

type panel struct {
	title string
	bars  []bar
}

const (
	panelW   = 480
	labelW   = 165
	margin   = 16
	barH     = 22
	barGap   = 6
	titleTop = 22
)

// chart draws one small horizontal bar chart per measure, two per line.
func chart(res *Results) image.Image {
	var panels []panel
	for _, r := range rows(res) {
		if r.Name == "latency p50, HEAD manifest" || r.Name == "latency p99, HEAD manifest" {
			continue // the added latency panels say it against the limit
		}
		p := panel{title: fmt.Sprintf("%s (%s, %s)", r.Name, r.Unit, map[bool]string{true: "higher is better", false: "lower is better"}[r.Higher])}
		for _, t := range res.Targets {
			if v, ok := r.Values[t]; ok {
				p.bars = append(p.bars, bar{label: title(t), value: v, text: fmtVal(v, r.Prec), color: colorOf[t]})
			}
		}
		panels = append(panels, p)
	}
	if rt := res.Routes; rt != nil {
		many := fmtVal(float64(rt.Count), 0) + " routes"
		panels = append(panels,
			panel{title: "nexmux: HEAD manifest req/s by route count", bars: []bar{
				{label: "1 route", value: rt.RateOne.Median, text: fmtVal(rt.RateOne.Median, 0), color: colorOf[colNexmux]},
				{label: many, value: rt.RateMany.Median, text: fmtVal(rt.RateMany.Median, 0), color: colorMany},
			}},
			panel{title: "nexmux: full handshakes/s by route count", bars: []bar{
				{label: "1 route", value: rt.HandshakeOne.Median, text: fmtVal(rt.HandshakeOne.Median, 0), color: colorOf[colNexmux]},
				{label: many, value: rt.HandshakeMany.Median, text: fmtVal(rt.HandshakeMany.Median, 0), color: colorMany},
			}})
	}
	cols := 2
	lines := (len(panels) + cols - 1) / cols
	header := 56
	// Every panel is as tall as the one with the most bars (one per
	// target) needs, plus room before the next panel's title.
	most := 0
	for _, p := range panels {
		most = max(most, len(p.bars))
	}
	panelH := titleTop + 4 + most*(barH+barGap) + 24
	w, h := cols*panelW+margin, header+lines*panelH+margin
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	// basicfont's 7x13 bitmap face: legible, and no font parser (and its
	// dependencies) in the module for one chart.
	big, reg, small := basicfont.Face7x13, basicfont.Face7x13, basicfont.Face7x13
	text(img, big, margin, 24, ink, "nexmux vs nginx vs a bare Go ReverseProxy vs TLS direct, one machine, loopback")
	text(img, small, margin, 44, ink, fmt.Sprintf("%s - %s", res.Started.UTC().Format("2006-01-02"), machineText(res.Machine)))
	for i, p := range panels {
		x0 := margin + (i%cols)*panelW
		y0 := header + (i/cols)*panelH
		drawPanel(img, reg, small, x0, y0, p)
	}
	return img
}

func drawPanel(img *image.RGBA, reg, small font.Face, x0, y0 int, p panel) {
	text(img, reg, x0, y0+titleTop-6, ink, p.title)
	maxV := 0.0
	for _, b := range p.bars {
		maxV = max(maxV, b.value)
	}
	barMax := panelW - margin - labelW - 70
	fill(img, image.Rect(x0+labelW-1, y0+titleTop, x0+labelW, y0+titleTop+len(p.bars)*(barH+barGap)), faint)
	for j, b := range p.bars {
		y := y0 + titleTop + 4 + j*(barH+barGap)
		text(img, small, x0, y+barH-7, ink, b.label)
		wv := 0
		if maxV > 0 && b.value > 0 {
			wv = max(int(float64(barMax)*b.value/maxV), 1)
		}
		fill(img, image.Rect(x0+labelW, y, x0+labelW+wv, y+barH), b.color)
		text(img, small, x0+labelW+wv+5, y+barH-7, ink, b.text)
	}
}

func fill(img *image.RGBA, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

func text(img *image.RGBA, face font.Face, x, y int, c color.Color, s string) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(asciiOnly.Replace(s))
}

// asciiOnly spells out what the 7x13 bitmap face has no glyph for.
var asciiOnly = strings.NewReplacer("µs", "us", "×", "x", "÷", "/", "≥", ">=", "≤", "<=", "·", "-")

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
