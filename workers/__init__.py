"""The channel worker pools. One module per channel builds that channel's pipeline;
``actors.py`` turns pipelines into Dramatiq actors on the channel's queue; ``fleet.py`` is
what ``kai-messaging worker`` (the Dramatiq CLI) loads; ``scheduler.py`` publishes parked
and lost messages when they are due."""
