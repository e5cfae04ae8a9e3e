"""Assets that move: carriers, itineraries, stations, lanes and the visit of each order."""
