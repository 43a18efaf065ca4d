import gzip
from collections import Counter
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from apps.replay.tlc import TripReadReport, ZoneTable, read_trips
from tests.support import shared_data

OFFICIAL = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,"
    "store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,"
    "tolls_amount,improvement_surcharge,total_amount,congestion_surcharge\r\n"
)
ROWS = [
    "1,2019-01-15 03:36:12,2019-01-15 03:42:19,1,1.0,1,N,230,48,1,6.5,0.5,0.5,1.95,0.0,0.3,9.75,\r\n",  # ok
    "2,2019-01-16 10:00:00,2019-01-16 10:10:00,1,2.0,1,N,230,48,2,-8.0,0,-0.5,0,0,-0.3,-8.8,\r\n",  # refund
    "2,2019-01-16 11:00:00,2019-01-16 10:50:00,1,2.0,1,N,230,48,1,8.0,0,0.5,0,0,0.3,8.8,\r\n",  # time travel
    "2,2008-12-31 23:50:00,2009-01-01 00:10:00,1,2.0,1,N,230,48,1,8.0,0,0.5,0,0,0.3,8.8,\r\n",  # meter clock
    "1,2019-01-17 12:00:00,2019-01-17 12:05:00,1,0.0,1,N,230,48,2,3.0,0,0.5,0,0,0.3,3.8,\r\n",  # zero distance
    "1,2019-01-18 12:00:00,2019-01-18 12:05:00,1,1.0,1,N,264,264,2,5.0,0,0.5,0,0,0.3,5.8,\r\n",  # unknown zone
    "1,2019-01-18 12:00:00,not a time,1,1.0,1,N,230,48,2,5.0,0,0.5,0,0,0.3,5.8,\r\n",  # garbage
]
LATLON = (
    "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,pickup_longitude,"
    "pickup_latitude,RateCodeID,store_and_fwd_flag,dropoff_longitude,dropoff_latitude,payment_type,"
    "fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount\n"
    "2,2015-01-15 19:05:39,2015-01-15 19:23:42,1,1.59,-73.99,40.75,1,N,-73.974784,40.750617,1,12,1,0.5,3.25,0,0.3,17.05\n"
    "2,2015-01-15 19:05:39,2015-01-15 19:23:42,1,1.59,0,0,1,N,0,0,1,12,1,0.5,3.25,0,0.3,17.05\n"
)


@pytest.fixture
def zones(tmp_path) -> ZoneTable:
    (tmp_path / "lookup.csv").write_text(
        '"LocationID","Borough","Zone","service_zone"\n48,"Manhattan","Clinton East","Yellow Zone"\n'
    )
    (tmp_path / "centroids.csv").write_text(
        "LocationID,zone,borough,lat,lon,longitude,latitude\n"
        "48,Clinton East,Manhattan,216099.1,986345.4,-73.989,40.762\n"
    )
    return ZoneTable.load(tmp_path / "lookup.csv", tmp_path / "centroids.csv")


def test_odd_rows_are_dropped_or_kept_as_documented(tmp_path, zones):
    path = tmp_path / "yellow_tripdata_2019-01.csv"
    path.write_text(OFFICIAL + "".join(ROWS))
    report = TripReadReport()
    trips = list(read_trips(path, zones, report))
    assert [t.row for t in trips] == [1, 5, 6]
    assert report.dropped == {
        "negative_amount": 1,
        "negative_duration": 1,
        "outside_file_month": 1,
        "unparseable": 1,
    }
    assert report.kept_odd == {"zero_distance": 1, "no_location": 1}
    first = trips[0]
    assert (first.latitude, first.longitude, first.place) == (40.762, -73.989, "Clinton East, Manhattan")
    assert (
        first.pickup.isoformat() == "2019-01-15T03:36:12-05:00"
        and first.duration_minutes == pytest.approx(6.1166, 1e-3)
    )
    assert trips[2].latitude is None  # zone 264 is "Unknown"


def test_lat_lon_schema_and_zero_coordinates(tmp_path):
    path = tmp_path / "yellow_tripdata_2015-01.csv"
    path.write_text(LATLON)
    report = TripReadReport()
    trips = list(read_trips(path, None, report))
    assert (trips[0].latitude, trips[0].longitude) == (40.750617, -73.974784)
    assert trips[1].latitude is None and report.kept_odd == {"no_location": 1}


def test_gzip_and_parquet_give_the_same_trips(tmp_path, zones):
    csv_path = tmp_path / "yellow_tripdata_2019-01.csv"
    csv_path.write_text(OFFICIAL + "".join(ROWS[:1] + ROWS[4:6]))
    gz_path = tmp_path / "yellow_tripdata_2019-01.csv.gz"
    gz_path.write_bytes(gzip.compress(csv_path.read_bytes()))
    parquet_path = tmp_path / "yellow_tripdata_2019-01.parquet"
    table = pacsv.read_csv(
        csv_path, convert_options=pacsv.ConvertOptions(timestamp_parsers=["%Y-%m-%d %H:%M:%S"])
    )
    pq.write_table(table, parquet_path)

    def key(t):
        return (t.pickup, t.dropoff, t.total_amount, t.trip_distance, t.dropoff_zone, t.latitude)

    expected = [key(t) for t in read_trips(csv_path, zones)]
    assert [key(t) for t in read_trips(gz_path, zones)] == expected
    assert [key(t) for t in read_trips(parquet_path, zones)] == expected


def test_centroids_in_feet_are_refused(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("LocationID,lat,lon\n1,191376.7,935996.8\n")
    with pytest.raises(ValueError, match="not in degrees"):
        ZoneTable.load(None, bad)


@pytest.mark.parametrize(
    "relative",
    [
        "nyc_tlc_yellow_gx_samples/yellow_tripdata_sample_2019-01.csv",  # snake_case headers, CRLF
        "nyc_tlc_yellow_gx_samples/yellow_tripdata_sample_2021.csv",  # official headers
        "nyc_tlc_yellow_latlon_2015_2016_small/yellow_tripdata_2015-01.csv",  # lat/lon schema
        "nyc_tlc_yellow_latlon_2015_2016_small/yellow_tripdata_2016-01.csv",  # RatecodeID spelling
        "seaborn_taxis/raw_taxis.csv",  # official headers plus color
    ],
)
def test_real_tlc_header_variants_parse(relative):
    path = shared_data(*relative.split("/"))
    zones = ZoneTable.load(
        shared_data("nyc_taxi_zones", "taxi_zone_lookup.csv"),
        shared_data("nyc_taxi_zones", "taxi_zone_centroids_latlon__Aditya-jod.csv"),
    )
    report = TripReadReport()
    trips = list(read_trips(Path(path), zones, report))
    assert report.rows > 900 and report.trips > 0.97 * report.rows
    assert report.rows == report.trips + sum(report.dropped.values())
    located = sum(t.latitude is not None for t in trips)
    assert located > 0.9 * len(trips)
    assert all(t.total_amount >= 0 and t.dropoff >= t.pickup for t in trips)
    taxis = Counter(t.taxi for t in trips)
    assert set(taxis) <= {"yellow", "green"} and taxis["yellow"] > 0
    if "seaborn" in relative:
        assert taxis["green"] > 900  # the file mixes both colours in a `color` column
