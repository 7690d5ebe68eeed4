package mux

// FirstFlight is firstFlight for the external tests (package mux_test).
var FirstFlight = firstFlight
