"""English dates as the app always wrote them ("7 Dec 2026, 14:05"), not Django's US defaults
("Dec. 7, 2026, 2:05 p.m."): the people using it are in Europe. Polish uses Django's own pl formats."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i:s"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
