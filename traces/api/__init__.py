"""The traces query API: lists, traces, span trees and spans."""
