// Package lab tests the drlab lab and drctl end to end, as processes.
package lab
