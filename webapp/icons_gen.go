//go:build ignore

// icons_gen draws the web app's PNG icons (the house of icon.svg, white on
// the accent blue) with the standard library, so no image tool is needed:
//
//	go generate ./webapp
//
// It writes static/icon-192.png, static/icon-512.png and
// static/icon-maskable-512.png (the house inside the maskable safe zone).
package main

import (
	"image"
	"image/color"
	"image/png"
	"log"
	"os"
	"path/filepath"
)

// house is icon.svg's outline on its 24×24 grid.
var house = [][2]float64{{3, 11}, {12, 3}, {21, 11}, {21, 21}, {15, 21}, {15, 15}, {9, 15}, {9, 21}, {3, 21}}

var (
	accent = color.NRGBA{0x2f, 0x6f, 0xde, 0xff}
	white  = color.NRGBA{0xff, 0xff, 0xff, 0xff}
)

func main() {
	for _, icon := range []struct {
		name  string
		size  int
		scale float64 // the house's share of the icon's width
		round bool    // rounded corners (a maskable icon is full-bleed)
	}{
		{"icon-192.png", 192, 0.72, true},
		{"icon-512.png", 512, 0.72, true},
		{"icon-maskable-512.png", 512, 0.56, false},
	} {
		img := draw(icon.size, icon.scale, icon.round)
		f, err := os.Create(filepath.Join("static", icon.name))
		if err != nil {
			log.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			log.Fatal(err)
		}
		if err := f.Close(); err != nil {
			log.Fatal(err)
		}
	}
}

// draw renders the icon with 4×4 supersampling for smooth edges.
func draw(size int, scale float64, round bool) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	s := float64(size)
	unit := s * scale / 18 // the house spans 18 units (3..21)
	off := (s - 18*unit) / 2
	radius := s * 0.18
	const n = 4
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			var bg, fg int
			for sy := 0; sy < n; sy++ {
				for sx := 0; sx < n; sx++ {
					px, py := float64(x)+(float64(sx)+0.5)/n, float64(y)+(float64(sy)+0.5)/n
					if round && outsideRounded(px, py, s, radius) {
						continue
					}
					bg++
					if inside((px-off)/unit+3, (py-off)/unit+2) {
						fg++
					}
				}
			}
			if bg == 0 {
				continue
			}
			c := mix(accent, white, float64(fg)/float64(bg))
			c.A = uint8(255 * bg / (n * n))
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

// outsideRounded reports whether (x, y) lies in a cut-off corner.
func outsideRounded(x, y, s, r float64) bool {
	cx, cy := min(max(x, r), s-r), min(max(y, r), s-r)
	dx, dy := x-cx, y-cy
	return dx*dx+dy*dy > r*r
}

// inside is the even-odd test of (x, y) against the house.
func inside(x, y float64) bool {
	in := false
	for i, j := 0, len(house)-1; i < len(house); j, i = i, i+1 {
		xi, yi, xj, yj := house[i][0], house[i][1], house[j][0], house[j][1]
		if (yi > y) != (yj > y) && x < (xj-xi)*(y-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}

func mix(a, b color.NRGBA, t float64) color.NRGBA {
	l := func(p, q uint8) uint8 { return uint8(float64(p)*(1-t) + float64(q)*t + 0.5) }
	return color.NRGBA{l(a.R, b.R), l(a.G, b.G), l(a.B, b.B), 0xff}
}
